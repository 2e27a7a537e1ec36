package safetensors

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// Hand-computed binary16 values: sign, exponent-15, and mantissa/1024.
func TestF16ToFloat32Known(t *testing.T) {
	cases := []struct {
		bits uint16
		want float64
	}{
		{0x0000, 0},
		{0x3c00, 1},
		{0xc000, -2},
		{0x3555, 0.333251953125},         // 2^-2 × (1 + 341/1024)
		{0x3bff, 0.99951171875},          // 2^-1 × (1 + 1023/1024)
		{0x7bff, 65504},                  // largest finite
		{0x0400, 6.103515625e-05},        // 2^-14, smallest normal
		{0x03ff, 6.097555160522461e-05},  // 1023 × 2^-24, largest subnormal
		{0x0001, 5.960464477539063e-08},  // 2^-24, smallest subnormal
		{0x8001, -5.960464477539063e-08}, // negative subnormal
		{0x0200, 3.0517578125e-05},       // 512 × 2^-24
		{0xfbff, -65504},
	}
	for _, c := range cases {
		got := F16ToFloat32(c.bits)
		if float64(got) != c.want {
			t.Errorf("F16ToFloat32(%#04x) = %g, want %g", c.bits, got, c.want)
		}
	}
	if v := F16ToFloat32(0x8000); v != 0 || !math.Signbit(float64(v)) {
		t.Errorf("F16ToFloat32(0x8000) = %g, want -0", v)
	}
	if v := F16ToFloat32(0x7c00); !math.IsInf(float64(v), 1) {
		t.Errorf("F16ToFloat32(0x7c00) = %g, want +Inf", v)
	}
	if v := F16ToFloat32(0xfc00); !math.IsInf(float64(v), -1) {
		t.Errorf("F16ToFloat32(0xfc00) = %g, want -Inf", v)
	}
	for _, nan := range []uint16{0x7e00, 0x7c01, 0xfe00, 0x7fff} {
		if v := F16ToFloat32(nan); !math.IsNaN(float64(v)) {
			t.Errorf("F16ToFloat32(%#04x) = %g, want NaN", nan, v)
		}
	}
}

func TestBF16ToFloat32Known(t *testing.T) {
	cases := []struct {
		bits uint16
		want float64
	}{
		{0x3f80, 1},
		{0xc000, -2},
		{0x4049, 3.140625},               // 2 × (1 + 73/128)
		{0x7f7f, 3.3895313892515355e+38}, // largest finite
		{0x0080, 1.1754943508222875e-38}, // 2^-126, smallest normal
		{0x0001, 9.183549615799121e-41},  // 2^-133, subnormal
	}
	for _, c := range cases {
		if got := BF16ToFloat32(c.bits); float64(got) != c.want {
			t.Errorf("BF16ToFloat32(%#04x) = %g, want %g", c.bits, got, c.want)
		}
	}
	if v := BF16ToFloat32(0xff80); !math.IsInf(float64(v), -1) {
		t.Errorf("BF16ToFloat32(0xff80) = %g, want -Inf", v)
	}
	if v := BF16ToFloat32(0x7fc0); !math.IsNaN(float64(v)) {
		t.Errorf("BF16ToFloat32(0x7fc0) = %g, want NaN", v)
	}
}

func TestFloat32ToF16Rounding(t *testing.T) {
	cases := []struct {
		in   float64
		want uint16
	}{
		{1, 0x3c00},
		{1 + 0x1p-11, 0x3c00},   // tie, 0x3c00 is even
		{1 + 3*0x1p-11, 0x3c02}, // tie, 0x3c01 is odd so round up
		{1 + 0x1p-11 + 0x1p-20, 0x3c01},
		{65504, 0x7bff},
		{65519, 0x7bff}, // below the halfway point to 65536
		{65520, 0x7c00}, // tie with an odd mantissa: rounds to Inf
		{1e6, 0x7c00},
		{-1e6, 0xfc00},
		{0x1p-24, 0x0001},
		{0x1p-25, 0x0000}, // tie between 0 and 2^-24: even is 0
		{0x1p-25 * 1.5, 0x0001},
		{3 * 0x1p-25, 0x0002}, // tie between 1 and 2 subnormal units
		{0x1p-26, 0x0000},
		{0x1p-14 - 0x1p-25, 0x0400}, // carries from subnormal into normal
		{6.097555160522461e-05, 0x03ff},
		{0x1p-149, 0x0000}, // float32 subnormal
		{-0x1p-149, 0x8000},
	}
	for _, c := range cases {
		if got := Float32ToF16(float32(c.in)); got != c.want {
			t.Errorf("Float32ToF16(%g) = %#04x, want %#04x", c.in, got, c.want)
		}
	}
	if got := Float32ToF16(float32(math.Inf(1))); got != 0x7c00 {
		t.Errorf("Float32ToF16(+Inf) = %#04x", got)
	}
	// A NaN whose payload is only in the low bits must stay NaN.
	if got := Float32ToF16(math.Float32frombits(0x7f800001)); got&0x7c00 != 0x7c00 || got&0x3ff == 0 {
		t.Errorf("Float32ToF16(sNaN) = %#04x, want a NaN", got)
	}
}

func TestFloat32ToBF16Rounding(t *testing.T) {
	cases := []struct {
		in   float32
		want uint16
	}{
		{1, 0x3f80},
		{1 + 0x1p-8, 0x3f80},   // tie, even
		{1 + 3*0x1p-8, 0x3f82}, // tie, odd rounds up
		{1 + 0x1p-8 + 0x1p-20, 0x3f81},
		{math.MaxFloat32, 0x7f80}, // rounds past the largest bfloat16
		{-2, 0xc000},
	}
	for _, c := range cases {
		if got := Float32ToBF16(c.in); got != c.want {
			t.Errorf("Float32ToBF16(%g) = %#04x, want %#04x", c.in, got, c.want)
		}
	}
	if got := Float32ToBF16(math.Float32frombits(0x7f800001)); got&0x7f80 != 0x7f80 || got&0x7f == 0 {
		t.Errorf("Float32ToBF16(sNaN) = %#04x, want a NaN", got)
	}
}

// Every half-precision value must survive widening and narrowing unchanged.
func TestHalfRoundTripExhaustive(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		f := F16ToFloat32(h)
		if math.IsNaN(float64(f)) {
			if h&0x7c00 != 0x7c00 || h&0x3ff == 0 {
				t.Fatalf("F16 %#04x decoded to NaN", h)
			}
			if back := Float32ToF16(f); back&0x7c00 != 0x7c00 || back&0x3ff == 0 {
				t.Fatalf("F16 NaN %#04x re-encoded to %#04x", h, back)
			}
			continue
		}
		if back := Float32ToF16(f); back != h {
			t.Fatalf("F16 %#04x -> %g -> %#04x", h, f, back)
		}
		b := BF16ToFloat32(h)
		if math.IsNaN(float64(b)) {
			continue
		}
		if back := Float32ToBF16(b); back != h {
			t.Fatalf("BF16 %#04x -> %g -> %#04x", h, b, back)
		}
	}
}

// Float32ToF16 against a brute-force reference: the nearest finite binary16
// (ties to the even encoding), computed in float64 where it is exact.
func TestFloat32ToF16MatchesNearest(t *testing.T) {
	type entry struct {
		v    float64
		bits uint16
	}
	var pos []entry // non-negative finite values, sorted
	for i := 0; i < 0x7c00; i++ {
		pos = append(pos, entry{float64(F16ToFloat32(uint16(i))), uint16(i)})
	}
	// Rounding treats 2^16 as the next value after 65504; it encodes as Inf
	// and is "even", so the tie at 65520 goes to Inf.
	pos = append(pos, entry{65536, 0x7c00})
	ref := func(f float32) uint16 {
		x := float64(f)
		sign := uint16(0)
		if math.Signbit(x) {
			sign, x = 0x8000, -x
		}
		if x >= 65536 {
			return sign | 0x7c00
		}
		j := sort.Search(len(pos), func(k int) bool { return pos[k].v >= x })
		if j < len(pos) && pos[j].v == x {
			return sign | pos[j].bits
		}
		lo, hi := pos[j-1], pos[j]
		switch d1, d2 := x-lo.v, hi.v-x; {
		case d1 < d2:
			return sign | lo.bits
		case d2 < d1:
			return sign | hi.bits
		case lo.bits&1 == 0:
			return sign | lo.bits
		default:
			return sign | hi.bits
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	check := func(f float32) {
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			return
		}
		if got, want := Float32ToF16(f), ref(f); got != want {
			t.Fatalf("Float32ToF16(%g [%#08x]) = %#04x, want %#04x", f, math.Float32bits(f), got, want)
		}
	}
	for range 200000 {
		// Exponents concentrated around the binary16 range, random mantissa.
		e := rng.IntN(50) - 30
		f := float32(math.Ldexp(1+rng.Float64(), e))
		if rng.IntN(2) == 0 {
			f = -f
		}
		check(f)
		check(math.Float32frombits(rng.Uint32()))
	}
	// Every midpoint between adjacent binary16 values, and its neighbours.
	for i := 1; i < len(pos); i++ {
		mid := float32((pos[i-1].v + pos[i].v) / 2)
		check(mid)
		check(math.Nextafter32(mid, 0))
		check(math.Nextafter32(mid, 1e9))
	}
}
