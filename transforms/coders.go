package transforms

import (
	"bytes"
	"encoding/gob"
	"reflect"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/beamtune/beamtune/report"
	"github.com/beamtune/beamtune/trainer"
)

// Java runners (Flink, Spark) decode and re-encode Beam schema rows between
// stages. The Go SDK writes a nil slice or map as a null in a field its schema
// declares non-nullable; Java's RowCoder re-encodes such a row without the
// null bit, and the next decode reads the following bytes as the missing field
// (on Flink the first shuffle spins forever). Element and accumulator types
// with slice or map fields therefore get an opaque coder, whose bytes a Java
// runner passes through untouched. gob, unlike the JSON fallback, keeps NaN.
func init() {
	for _, t := range []reflect.Type{
		reflect.TypeOf(InputFile{}),
		reflect.TypeOf(Stats{}),
		reflect.TypeOf(labelSet{}),
		reflect.TypeOf(trainer.Job{}),
		reflect.TypeOf(Prediction{}),
		reflect.TypeOf(Example{}),
		reflect.TypeOf(report.Metrics{}),
		reflect.TypeOf(ModelMetrics{}),
		reflect.TypeOf(ModelSliceMetrics{}),
		reflect.TypeOf(metricsAccum{}),
	} {
		beam.RegisterCoder(t, encodeGob, decodeGob)
	}
}

func encodeGob(_ reflect.Type, v beam.T) ([]byte, error) {
	var b bytes.Buffer
	err := gob.NewEncoder(&b).Encode(v)
	return b.Bytes(), err
}

func decodeGob(t reflect.Type, data []byte) (beam.T, error) {
	v := reflect.New(t)
	if err := gob.NewDecoder(bytes.NewReader(data)).DecodeValue(v); err != nil {
		return nil, err
	}
	return v.Elem().Interface(), nil
}
