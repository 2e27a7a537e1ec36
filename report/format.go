package report

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Number formatting, shared by both renderers so the Markdown and the HTML
// always show the same digits.

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// fixed formats x with prec decimals; "n/a" for NaN/Inf (the renderers
// take reports that Write would refuse, e.g. straight from code).
func fixed(x float64, prec int) string {
	if !finite(x) {
		return "n/a"
	}
	s := strconv.FormatFloat(x, 'f', prec, 64)
	if strings.Trim(s, "-0.") == "" {
		s = strings.TrimPrefix(s, "-") // no "-0.00"
	}
	return s
}

// pct formats a fraction as a percentage with 2 decimals: 0.91284 -> 91.28%.
func pct(x float64) string {
	if !finite(x) {
		return "n/a"
	}
	return fixed(100*x, 2) + "%"
}

// signed formats with an explicit sign: +1.23, -0.40, 0.00.
func signed(x float64, prec int) string {
	s := fixed(x, prec)
	if finite(x) && !strings.HasPrefix(s, "-") && strings.Trim(s, "0.") != "" {
		s = "+" + s
	}
	return s
}

// sig formats x with at most 4 significant digits and no exponent, for
// values of unknown scale (gate check values and thresholds).
func sig(x float64) string {
	if !finite(x) {
		return "n/a"
	}
	if x == 0 {
		return "0"
	}
	dec := 4 - int(math.Floor(math.Log10(math.Abs(x)))) - 1
	if dec < 0 {
		dec = 0
	}
	if dec > 8 {
		dec = 8
	}
	s := fixed(x, dec)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// thousands formats an integer with comma separators: 7600 -> 7,600.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// human formats a parameter count: 22713216 -> 22.71M.
func human(n int64) string {
	f := float64(n)
	switch {
	case n <= 0:
		return "—"
	case f >= 1e9:
		return fixed(f/1e9, 2) + "B"
	case f >= 1e6:
		return fixed(f/1e6, 2) + "M"
	case f >= 1e3:
		return fixed(f/1e3, 1) + "k"
	}
	return strconv.FormatInt(n, 10)
}

// megabytes formats a byte count in MB (10^6 bytes, as model hubs do).
func megabytes(b int64) string {
	if b <= 0 {
		return "—"
	}
	mb := float64(b) / 1e6
	if mb < 10 {
		return fixed(mb, 2)
	}
	return fixed(mb, 1)
}

// measured formats a speed figure; 0 means "not measured" (the speed
// runs are optional and Compare leaves ratios at 0 when a base is missing).
func measured(x float64, prec int, suffix string) string {
	if x == 0 {
		return "—"
	}
	return fixed(x, prec) + suffix
}

func ciPct(ci Interval) string {
	if ci.Low == 0 && ci.High == 0 {
		return ""
	}
	return fixed(100*ci.Low, 2) + "–" + fixed(100*ci.High, 2)
}

func ci4(ci Interval) string {
	if ci.Low == 0 && ci.High == 0 {
		return ""
	}
	return fixed(ci.Low, 4) + "–" + fixed(ci.High, 4)
}

// withCI joins a value and its interval: "91.28% (89.33–93.12)".
func withCI(v, ci string) string {
	if ci == "" {
		return v
	}
	return v + " (" + ci + ")"
}

func topKText(m Metrics) string {
	parts := make([]string, 0, len(m.TopK))
	for _, k := range m.TopK {
		parts = append(parts, fmt.Sprintf("top-%d %s", k.K, pct(k.Accuracy)))
	}
	return strings.Join(parts, ", ")
}

func verdictWord(v string) string {
	switch v {
	case VerdictBlessed:
		return "BLESSED"
	case VerdictRejected:
		return "REJECTED"
	case "":
		return "NO VERDICT"
	}
	return strings.ToUpper(v)
}

// classLabel returns the name of class i of m, falling back to its index when
// Labels is shorter than the confusion matrix (a malformed report should
// still render).
func classLabel(m Metrics, i int) string {
	if i < len(m.Labels) && m.Labels[i] != "" {
		return m.Labels[i]
	}
	return "class " + strconv.Itoa(i)
}
