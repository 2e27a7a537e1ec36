package gcstest

import "testing"

func TestHeaderParsers(t *testing.T) {
	for _, tc := range []struct {
		v          string
		start, end int64
		total      string
		ok         bool
	}{
		{"bytes 0-262143/*", 0, 262143, "*", true},
		{"bytes 262144-300000/300001", 262144, 300000, "300001", true},
		{"bytes */300001", 0, 0, "", false},
		{"bytes -1-5/6", 0, 0, "", false},
		{"bytes 1-2/x", 0, 0, "", false},
		{"bits 1-2/3", 0, 0, "", false},
	} {
		s, e, tot, ok := parseContentRange(tc.v)
		if ok != tc.ok || s != tc.start || e != tc.end || tot != tc.total {
			t.Errorf("parseContentRange(%q) = %d %d %q %v", tc.v, s, e, tot, ok)
		}
	}
	if e, ok := parseCommittedRange("bytes=0-524287"); !ok || e != 524287 {
		t.Errorf("parseCommittedRange = %d %v", e, ok)
	}
	if _, ok := parseCommittedRange("bytes=5-9"); ok {
		t.Error("a range not starting at 0 was accepted")
	}
	for p, want := range map[string]bool{
		"/storage/v1/b/bkt/o": true, "/storage/v1/b/bkt/o/": true,
		"/storage/v1/b/bkt/o/obj": false, "/storage/v1/b//o": false, "/storage/v1/b": false,
	} {
		if isListPath(p) != want {
			t.Errorf("isListPath(%q) = %v", p, !want)
		}
	}
}
