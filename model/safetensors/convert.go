package safetensors

import "math"

// F16ToFloat32 converts an IEEE 754 binary16 value, given as its bits, to
// float32. Every binary16 value is exactly representable in float32, so the
// conversion is exact; subnormals are normalised, and infinities and NaNs
// (with their payload) carry over.
func F16ToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch exp {
	case 0x1f: // Inf or NaN: widen the payload, keeping the quiet bit in place
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case 0: // zero or subnormal: mant × 2^-24, exact in float32
		v := float32(mant) * (1.0 / (1 << 24))
		if sign != 0 {
			v = -v
		}
		return v
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}

// BF16ToFloat32 converts a bfloat16 value, given as its bits, to float32.
// bfloat16 is the upper half of a float32, so this is exact.
func BF16ToFloat32(b uint16) float32 {
	return math.Float32frombits(uint32(b) << 16)
}

// Float32ToF16 converts f to IEEE 754 binary16 bits, rounding to nearest
// with ties to even. Values beyond the binary16 range become ±Inf, values
// below half the smallest subnormal become ±0, and NaNs stay (quiet) NaNs.
func Float32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant == 0 {
			return sign | 0x7c00
		}
		// Force the quiet bit so that a payload living only in the low
		// bits does not truncate to an infinity.
		return sign | 0x7e00 | uint16(mant>>13)
	}
	e := exp - 127 + 15 // binary16 biased exponent
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		// Result is a binary16 subnormal (or zero): q × 2^-24 with
		// q = m × 2^(e-14), m the 24-bit significand with its implicit 1.
		if e < -10 {
			return sign // below 2^-25: rounds to zero
		}
		m := mant | 0x800000
		shift := uint(14 - e)
		q := m >> shift
		rem := m & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || (rem == half && q&1 == 1) {
			q++ // may carry into the smallest normal, whose encoding is 0x400
		}
		return sign | uint16(q)
	}
	q := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && q&1 == 1) {
		q++ // a carry into the exponent is correct, up to and including Inf
	}
	return sign | uint16(q)
}

// Float32ToBF16 converts f to bfloat16 bits, rounding to nearest with ties
// to even (as PyTorch does). NaNs stay (quiet) NaNs.
func Float32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 { // NaN
		return uint16(b>>16) | 0x0040
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}
