package transforms

import (
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
)

// TestMain initialises Beam (flags, worker mode) before any pipeline is
// built: the metrics tests run pipelines on prism.
func TestMain(m *testing.M) { ptest.Main(m) }
