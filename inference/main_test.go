package inference

import (
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
)

// TestMain initialises Beam before any pipeline is built: the tests run
// pipelines on prism, whose workers run in this process (so the process's
// model counts are the workers').
func TestMain(m *testing.M) { ptest.Main(m) }
