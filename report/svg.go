package report

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// SVG charts, inlined in the HTML report.

// emptyChart stands in for a chart without data: a blank plot would look like
// a rendering bug, a sentence says what is missing.
func emptyChart(b *strings.Builder, id, msg string) {
	fmt.Fprintf(b, "<p class=\"empty\" id=\"%s\">%s</p>\n", esc(id), esc(msg))
}

// svgOpen starts a chart: id and class for tests and links, a <title>
// that screen readers announce and browsers show as a tooltip.
func svgOpen(b *strings.Builder, id, class string, w, h float64, title, desc string) {
	fmt.Fprintf(b, "<svg id=\"%s\" class=\"chart %s\" viewBox=\"0 0 %s %s\" width=\"%s\" height=\"%s\" role=\"img\" aria-labelledby=\"%s-title\">",
		esc(id), class, num(w), num(h), num(w), num(h), esc(id))
	fmt.Fprintf(b, "<title id=\"%s-title\">%s</title><desc>%s</desc>\n", esc(id), esc(title), esc(desc))
}

// niceNumber rounds x to 1, 2, 5 or 10 times a power of ten (Heckbert's "nice
// numbers"), so axis ticks land on values people read at a glance.
func niceNumber(x float64, round bool) float64 {
	if x <= 0 || !finite(x) {
		return 1
	}
	exp := math.Floor(math.Log10(x))
	f := x / math.Pow(10, exp)
	var nf float64
	if round {
		switch {
		case f < 1.5:
			nf = 1
		case f < 3:
			nf = 2
		case f < 7:
			nf = 5
		default:
			nf = 10
		}
	} else {
		switch {
		case f <= 1:
			nf = 1
		case f <= 2:
			nf = 2
		case f <= 5:
			nf = 5
		default:
			nf = 10
		}
	}
	return nf * math.Pow(10, exp)
}

// niceTicks returns about n nice tick values covering [lo, hi]; the first and
// last are the axis domain. integer keeps steps whole (training steps).
func niceTicks(lo, hi float64, n int, integer bool) (ticks []float64, step float64) {
	if hi < lo {
		lo, hi = hi, lo
	}
	if hi == lo {
		pad := math.Abs(lo) * 0.1
		if pad == 0 {
			pad = 1
		}
		lo, hi = lo-pad, hi+pad
	}
	step = niceNumber((hi-lo)/float64(n-1), true)
	if integer && step < 1 {
		step = 1
	}
	// Integer tick indices (with a tolerance for 0.9/0.1 = 9.000000000000002)
	// keep float error from adding a spurious tick or accumulating.
	first := math.Floor(lo/step + 1e-9)
	last := math.Ceil(hi/step - 1e-9)
	for i := first; i <= last && len(ticks) < 100; i++ { // bounded: never loop forever
		ticks = append(ticks, i*step)
	}
	return ticks, step
}

// tickLabel formats a tick with as many decimals as the step needs;
// thousands as "k" so step axes stay narrow.
func tickLabel(v, step float64) string {
	if step >= 1000 && math.Mod(v, 1000) == 0 && v != 0 {
		return strconv.FormatFloat(v/1000, 'f', -1, 64) + "k"
	}
	dec := 0
	if step < 1 {
		dec = int(math.Ceil(-math.Log10(step) - 1e-9))
	}
	return fixed(v, dec)
}

type chartPoint struct{ x, y float64 }

// thinPoints keeps at most max points of a sorted series, always the first and
// the last: a polyline with more points than the plot has pixels only makes
// the file bigger.
func thinPoints(p []chartPoint, max int) []chartPoint {
	if len(p) <= max {
		return p
	}
	stride := float64(len(p)-1) / float64(max-1)
	out := make([]chartPoint, 0, max)
	for i := 0; i < max; i++ {
		out = append(out, p[int(math.Round(float64(i)*stride))])
	}
	return out
}

// lossChart draws train loss (a line over every logged step) and
// validation loss (line and markers at each eval) against the step.
func lossChart(b *strings.Builder, id string, m ModelReport) {
	if len(m.TrainingLog) == 0 {
		emptyChart(b, id, "no training log")
		return
	}
	var train, eval []chartPoint
	for _, e := range m.TrainingLog {
		// A multi-task run's per-task entries are its report's task rows;
		// the chart follows the run's own (mean) validation loss.
		if !finite(e.Loss) || e.Task != "" {
			continue
		}
		p := chartPoint{float64(e.Step), e.Loss}
		switch e.Kind {
		case LogTrain:
			train = append(train, p)
		case LogEval:
			eval = append(eval, p)
		}
	}
	if len(train)+len(eval) == 0 {
		emptyChart(b, id, "the training log has no loss values")
		return
	}
	// A resumed run can log steps out of order; lines must go left to right.
	byStep := func(p []chartPoint) { sort.SliceStable(p, func(i, j int) bool { return p[i].x < p[j].x }) }
	byStep(train)
	byStep(eval)
	train = thinPoints(train, 1200)

	minX, maxX, minY, maxY := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, s := range [][]chartPoint{train, eval} {
		for _, p := range s {
			minX, maxX = math.Min(minX, p.x), math.Max(maxX, p.x)
			minY, maxY = math.Min(minY, p.y), math.Max(maxY, p.y)
		}
	}
	xt, xstep := niceTicks(minX, maxX, 7, true)
	yt, ystep := niceTicks(minY, maxY, 6, false)
	const W, H = 560.0, 300.0
	const ml, mr, mt, mb = 54.0, 16.0, 30.0, 42.0
	pw, ph := W-ml-mr, H-mt-mb
	x0, x1, y0, y1 := xt[0], xt[len(xt)-1], yt[0], yt[len(yt)-1]
	sx := func(v float64) float64 { return ml + (v-x0)/(x1-x0)*pw }
	sy := func(v float64) float64 { return mt + ph - (v-y0)/(y1-y0)*ph }

	desc := fmt.Sprintf("%d train loss points and %d validation loss points over steps %s to %s", len(train), len(eval), tickLabel(minX, 1), tickLabel(maxX, 1))
	svgOpen(b, id, "loss-chart", W, H, "Loss curves: "+m.Name, desc)
	for _, v := range yt {
		y := sy(v)
		fmt.Fprintf(b, "<line class=\"gridline\" x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/>", num(ml), num(y), num(ml+pw), num(y))
		fmt.Fprintf(b, "<text x=\"%s\" y=\"%s\" text-anchor=\"end\">%s</text>\n", num(ml-6), num(y+3.5), tickLabel(v, ystep))
	}
	for _, v := range xt {
		x := sx(v)
		fmt.Fprintf(b, "<line class=\"axis\" x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/>", num(x), num(mt+ph), num(x), num(mt+ph+4))
		fmt.Fprintf(b, "<text x=\"%s\" y=\"%s\" text-anchor=\"middle\">%s</text>\n", num(x), num(mt+ph+16), tickLabel(v, xstep))
	}
	fmt.Fprintf(b, "<line class=\"axis\" x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/>", num(ml), num(mt+ph), num(ml+pw), num(mt+ph))
	fmt.Fprintf(b, "<line class=\"axis\" x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/>\n", num(ml), num(mt), num(ml), num(mt+ph))
	fmt.Fprintf(b, "<text x=\"%s\" y=\"%s\" text-anchor=\"middle\">step</text>", num(ml+pw/2), num(H-6))
	fmt.Fprintf(b, "<text x=\"14\" y=\"%s\" text-anchor=\"middle\" transform=\"rotate(-90 14 %s)\">loss</text>\n", num(mt+ph/2), num(mt+ph/2))

	line := func(p []chartPoint, class, colour string, width float64) {
		var pts strings.Builder
		for i, q := range p {
			if i > 0 {
				pts.WriteByte(' ')
			}
			pts.WriteString(num(sx(q.x)) + "," + num(sy(q.y)))
		}
		fmt.Fprintf(b, "<polyline class=\"series %s\" fill=\"none\" stroke=\"%s\" stroke-width=\"%s\" stroke-linejoin=\"round\" points=\"%s\"/>\n", class, colour, num(width), pts.String())
	}
	if len(train) > 1 {
		line(train, "train", trainColour, 1.5)
	} else if len(train) == 1 { // one point is no line: show it
		fmt.Fprintf(b, "<circle class=\"series train\" cx=\"%s\" cy=\"%s\" r=\"3\" fill=\"%s\"/>\n", num(sx(train[0].x)), num(sy(train[0].y)), trainColour)
	}
	if len(eval) > 1 {
		line(eval, "eval", evalColour, 2)
	}
	if len(eval) <= 200 { // markers show where evals happened; too many become a smear
		for _, q := range eval {
			fmt.Fprintf(b, "<circle class=\"marker eval\" cx=\"%s\" cy=\"%s\" r=\"3.2\" fill=\"#fff\" stroke=\"%s\" stroke-width=\"1.8\"><title>step %s: validation loss %s</title></circle>",
				num(sx(q.x)), num(sy(q.y)), evalColour, tickLabel(q.x, 1), fixed(q.y, 4))
		}
		b.WriteString("\n")
	}
	// Legend above the plot, right-aligned, so it never hides a curve.
	lx := ml + pw - 250
	b.WriteString("<g class=\"legend\">")
	if len(train) > 0 {
		fmt.Fprintf(b, "<line x1=\"%s\" y1=\"14\" x2=\"%s\" y2=\"14\" stroke=\"%s\" stroke-width=\"2.5\"/><text x=\"%s\" y=\"18\">train loss</text>", num(lx), num(lx+22), trainColour, num(lx+28))
	}
	if len(eval) > 0 {
		fmt.Fprintf(b, "<line x1=\"%s\" y1=\"14\" x2=\"%s\" y2=\"14\" stroke=\"%s\" stroke-width=\"2.5\"/><text x=\"%s\" y=\"18\">validation loss</text>",
			num(lx+110), num(lx+132), evalColour, num(lx+138))
		if len(eval) <= 200 { // the legend shows the marker only where the plot has them
			fmt.Fprintf(b, "<circle cx=\"%s\" cy=\"14\" r=\"3.2\" fill=\"#fff\" stroke=\"%s\" stroke-width=\"1.8\"/>", num(lx+121), evalColour)
		}
	}
	b.WriteString("</g>\n</svg>\n")

	// Caption: the numbers a reader looks for in a loss plot.
	var cap []string
	if len(train) > 0 {
		cap = append(cap, "final train loss "+fixed(train[len(train)-1].y, 4))
	}
	if len(eval) > 0 {
		best := eval[0]
		for _, q := range eval {
			if q.y < best.y {
				best = q
			}
		}
		cap = append(cap, "best validation loss "+fixed(best.y, 4)+" at step "+tickLabel(best.x, 1))
	}
	// The best of the metric the checkpoints were picked by: accuracy, or
	// the entries' own metric (macro-F1, Pearson, ...) when they name one.
	bestAcc, bestStep, haveAcc, name := 0.0, int64(0), false, ""
	for _, e := range m.TrainingLog {
		if e.Kind == LogEval && e.Task == "" && e.MetricName != "" && finite(e.Metric) && (name == "" || e.Metric > bestAcc) {
			bestAcc, bestStep, haveAcc, name = e.Metric, e.Step, true, e.MetricName
		}
	}
	for _, e := range m.TrainingLog {
		if name == "" && e.Kind == LogEval && e.Task == "" && finite(e.Accuracy) && (!haveAcc || e.Accuracy > bestAcc) {
			bestAcc, bestStep, haveAcc = e.Accuracy, e.Step, e.Accuracy > 0
		}
	}
	switch {
	case name != "":
		cap = append(cap, "best validation "+name+" "+fixed(bestAcc, 4)+" at step "+strconv.FormatInt(bestStep, 10))
	case haveAcc:
		cap = append(cap, "best validation accuracy "+pct(bestAcc)+" at step "+strconv.FormatInt(bestStep, 10))
	}
	fmt.Fprintf(b, "<div class=\"cap\">%s</div>\n", esc(strings.Join(cap, " · ")))
}

// reliabilityChart draws the reliability diagram: per non-empty
// confidence bin, a bar up to the bin's accuracy and a red band from there
// to its mean confidence (the calibration gap), with the diagonal of perfect
// calibration; below, a strip showing how many examples fall in each bin,
// since a large gap in a near-empty bin matters little.
func reliabilityChart(b *strings.Builder, id string, m ModelReport) {
	type bin struct {
		lo, hi, conf, acc float64
		n                 int64
	}
	var bins []bin
	var maxN int64
	for _, r := range m.Metrics.Reliability {
		if r.Count <= 0 || !finite(r.Accuracy) || !finite(r.Confidence) || !finite(r.Lower) || !finite(r.Upper) {
			continue // empty bins have no accuracy to show
		}
		clamp := func(v float64) float64 { return math.Max(0, math.Min(1, v)) }
		bins = append(bins, bin{clamp(r.Lower), clamp(r.Upper), clamp(r.Confidence), clamp(r.Accuracy), r.Count})
		if r.Count > maxN {
			maxN = r.Count
		}
	}
	if len(bins) == 0 {
		emptyChart(b, id, "no reliability bins")
		return
	}
	const P = 270.0 // plot side
	const ml, mt = 60.0, 26.0
	const strip = 34.0 // count strip height
	W := ml + P + 16
	H := mt + P + 40 + strip + 20
	sx := func(v float64) float64 { return ml + v*P }
	sy := func(v float64) float64 { return mt + P - v*P }
	svgOpen(b, id, "reliability-chart", W, H, "Reliability diagram: "+m.Name,
		fmt.Sprintf("accuracy against confidence in %d non-empty bins; ECE %s", len(bins), fixed(m.Metrics.ECE, 4)))
	for i := 0; i <= 5; i++ {
		v := float64(i) / 5
		fmt.Fprintf(b, "<line class=\"gridline\" x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/>", num(ml), num(sy(v)), num(ml+P), num(sy(v)))
		fmt.Fprintf(b, "<text x=\"%s\" y=\"%s\" text-anchor=\"end\">%s</text>", num(ml-6), num(sy(v)+3.5), fixed(v, 1))
		fmt.Fprintf(b, "<text x=\"%s\" y=\"%s\" text-anchor=\"middle\">%s</text>\n", num(sx(v)), num(mt+P+15), fixed(v, 1))
	}
	for _, q := range bins {
		x0, x1 := sx(q.lo)+0.75, sx(q.hi)-0.75
		if x1-x0 < 1 {
			x1 = x0 + 1
		}
		tip := fmt.Sprintf("confidence %s–%s: %s examples, accuracy %s, mean confidence %s",
			fixed(q.lo, 2), fixed(q.hi, 2), thousands(q.n), pct(q.acc), pct(q.conf))
		fmt.Fprintf(b, "<rect class=\"bin\" x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\" fill=\"#4e79a7\"><title>%s</title></rect>",
			num(x0), num(sy(q.acc)), num(x1-x0), num(sy(0)-sy(q.acc)), esc(tip))
		top, bot := math.Max(q.acc, q.conf), math.Min(q.acc, q.conf)
		if top-bot > 0.002 {
			fmt.Fprintf(b, "<rect class=\"gap\" x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\" fill=\"#e15759\" fill-opacity=\"0.35\" stroke=\"#e15759\" stroke-width=\"0.8\"/>",
				num(x0), num(sy(top)), num(x1-x0), num(sy(bot)-sy(top)))
		}
		h := float64(q.n) / float64(maxN) * strip
		if h < 1 {
			h = 1 // a bin with a handful of examples must stay visible
		}
		fmt.Fprintf(b, "<rect class=\"count\" x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\" fill=\"#9aa5b1\"><title>%s examples</title></rect>\n",
			num(x0), num(mt+P+40+strip-h), num(x1-x0), num(h), thousands(q.n))
	}
	fmt.Fprintf(b, "<line class=\"diagonal\" x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\" stroke=\"#57606a\" stroke-width=\"1.2\" stroke-dasharray=\"5 4\"/>\n", num(sx(0)), num(sy(0)), num(sx(1)), num(sy(1)))
	fmt.Fprintf(b, "<line class=\"axis\" x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/><line class=\"axis\" x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/>",
		num(ml), num(mt+P), num(ml+P), num(mt+P), num(ml), num(mt), num(ml), num(mt+P))
	fmt.Fprintf(b, "<line class=\"axis\" x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/>\n", num(ml), num(mt+P+40+strip), num(ml+P), num(mt+P+40+strip))
	fmt.Fprintf(b, "<text x=\"%s\" y=\"%s\" text-anchor=\"middle\">confidence (top probability)</text>", num(ml+P/2), num(mt+P+29))
	fmt.Fprintf(b, "<text x=\"%s\" y=\"%s\" text-anchor=\"end\">examples</text>", num(ml-6), num(mt+P+40+strip-2))
	fmt.Fprintf(b, "<text x=\"14\" y=\"%s\" text-anchor=\"middle\" transform=\"rotate(-90 14 %s)\">accuracy</text>\n", num(mt+P/2), num(mt+P/2))
	fmt.Fprintf(b, "<g class=\"legend\"><rect x=\"%s\" y=\"7\" width=\"12\" height=\"10\" fill=\"#4e79a7\"/><text x=\"%s\" y=\"16\">accuracy</text>", num(ml), num(ml+16))
	fmt.Fprintf(b, "<rect x=\"%s\" y=\"7\" width=\"12\" height=\"10\" fill=\"#e15759\" fill-opacity=\"0.35\" stroke=\"#e15759\" stroke-width=\"0.8\"/><text x=\"%s\" y=\"16\">gap</text>", num(ml+76), num(ml+92))
	fmt.Fprintf(b, "<line x1=\"%s\" y1=\"12\" x2=\"%s\" y2=\"12\" stroke=\"#57606a\" stroke-width=\"1.2\" stroke-dasharray=\"5 4\"/><text x=\"%s\" y=\"16\">perfect calibration</text></g>\n", num(ml+124), num(ml+146), num(ml+151))
	b.WriteString("</svg>\n")
	fmt.Fprintf(b, "<div class=\"cap\">ECE %s · log loss %s · %d of %d bins non-empty</div>\n",
		fixed(m.Metrics.ECE, 4), fixed(m.Metrics.LogLoss, 4), len(bins), len(m.Metrics.Reliability))
}

// f1Chart draws per-class F1 as grouped bars: one group per class, one
// bar per model in the model's colour, so a student losing one class shows.
// It returns the chart's width (0 for the no-data note) for the layout.
func f1Chart(b *strings.Builder, id string, models []ModelReport) float64 {
	var labels []string
	index := map[string]int{}
	for _, m := range models {
		for _, c := range m.Metrics.PerClass {
			if _, ok := index[c.Label]; !ok {
				index[c.Label] = len(labels)
				labels = append(labels, c.Label)
			}
		}
	}
	if len(labels) == 0 {
		emptyChart(b, id, "no per-class metrics")
		return 0
	}
	K, M := float64(len(labels)), float64(len(models))
	const ml, mr, mt = 44.0, 12.0, 30.0
	const maxPlot = 1080.0
	gap := 18.0
	bar := math.Min(34, (maxPlot/K-gap)/M)
	if bar < 2 {
		bar, gap = 2, 4 // many classes: thin bars, the width grows instead
	}
	group := bar*M + gap
	// Few classes: spread the groups over a minimum width (room for the
	// legend too) and let the bars grow a little, not float in white space.
	const minPlot = 360.0
	if group*K < minPlot {
		group = minPlot / K
		bar = math.Min(56, (group-24)/M)
		gap = group - bar*M
	}
	pw := group * K
	longest := 0
	for _, l := range labels {
		longest = max(longest, len([]rune(shorten(l, 18))))
	}
	rotate := float64(longest)*6.5 > group-4
	mb := 40.0
	if rotate {
		mb = 26 + float64(longest)*5
	}
	const ph = 220.0
	W := ml + pw + mr
	H := mt + ph + mb
	sy := func(v float64) float64 { return mt + ph - v*ph }
	svgOpen(b, id, "f1-chart", W, H, "Per-class F1 by model",
		fmt.Sprintf("F1 of %d classes for %d models", len(labels), len(models)))
	for i := 0; i <= 5; i++ {
		v := float64(i) / 5
		fmt.Fprintf(b, "<line class=\"gridline\" x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/><text x=\"%s\" y=\"%s\" text-anchor=\"end\">%s</text>\n",
			num(ml), num(sy(v)), num(ml+pw), num(sy(v)), num(ml-6), num(sy(v)+3.5), fixed(v, 1))
	}
	for mi, m := range models {
		for _, c := range m.Metrics.PerClass {
			if !finite(c.F1) {
				continue
			}
			f1 := math.Max(0, math.Min(1, c.F1))
			gi := float64(index[c.Label])
			x := ml + gi*group + gap/2 + float64(mi)*bar
			fmt.Fprintf(b, "<rect class=\"bar\" x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\" fill=\"%s\"><title>%s · %s: F1 %s (precision %s, recall %s, support %s)</title></rect>",
				num(x+0.5), num(sy(f1)), num(bar-1), num(sy(0)-sy(f1)), colour(mi),
				esc(m.Name), esc(c.Label), fixed(c.F1, 4), fixed(c.Precision, 4), fixed(c.Recall, 4), thousands(c.Support))
			if bar >= 26 {
				fmt.Fprintf(b, "<text x=\"%s\" y=\"%s\" text-anchor=\"middle\" style=\"font-size:9.5px\">%s</text>", num(x+bar/2), num(sy(f1)-3), fixed(c.F1, 2))
			}
		}
		b.WriteString("\n")
	}
	for gi, l := range labels {
		cx := ml + float64(gi)*group + group/2
		ty := mt + ph + 15
		if rotate {
			fmt.Fprintf(b, "<text x=\"%s\" y=\"%s\" text-anchor=\"end\" transform=\"rotate(-40 %s %s)\">%s<title>%s</title></text>\n",
				num(cx), num(ty), num(cx), num(ty), esc(shorten(l, 18)), esc(l))
		} else {
			fmt.Fprintf(b, "<text x=\"%s\" y=\"%s\" text-anchor=\"middle\">%s<title>%s</title></text>\n", num(cx), num(ty), esc(shorten(l, 18)), esc(l))
		}
	}
	fmt.Fprintf(b, "<line class=\"axis\" x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/>", num(ml), num(sy(0)), num(ml+pw), num(sy(0)))
	fmt.Fprintf(b, "<text x=\"12\" y=\"%s\" text-anchor=\"middle\" transform=\"rotate(-90 12 %s)\">F1</text>\n", num(mt+ph/2), num(mt+ph/2))
	b.WriteString("<g class=\"legend\">")
	lx := ml
	for mi, m := range models {
		name := shorten(m.Name, 24)
		fmt.Fprintf(b, "<rect x=\"%s\" y=\"7\" width=\"12\" height=\"10\" fill=\"%s\"/><text x=\"%s\" y=\"16\">%s</text>", num(lx), colour(mi), num(lx+16), esc(name))
		lx += 16 + float64(len([]rune(name)))*6.5 + 18
	}
	b.WriteString("</g>\n</svg>\n")
	return W
}

// shorten truncates long labels for axes; the full text is in <title>.
func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// blueShade maps a share in [0,1] to a white-to-navy scale (three stops,
// interpolated in RGB), the convention for "more is darker" heat maps.
func blueShade(t float64) string {
	stops := [][3]float64{{247, 251, 255}, {107, 174, 214}, {8, 48, 107}}
	t = math.Max(0, math.Min(1, t))
	seg := 0
	u := t * 2
	if u > 1 {
		seg, u = 1, u-1
	}
	a, c := stops[seg], stops[seg+1]
	return fmt.Sprintf("#%02x%02x%02x", int(math.Round(a[0]+(c[0]-a[0])*u)), int(math.Round(a[1]+(c[1]-a[1])*u)), int(math.Round(a[2]+(c[2]-a[2])*u)))
}

// confusionChart draws the confusion matrix as a heat map: rows are true
// classes, columns predictions, each cell shaded by its share of the row (so
// a rare class's errors are as visible as a common one's) and labelled with
// its count. It returns the chart's width (0 for the no-data note).
func confusionChart(b *strings.Builder, id string, m ModelReport) float64 {
	cm := m.Metrics.Confusion
	K := len(cm)
	if K == 0 {
		emptyChart(b, id, "no confusion matrix")
		return 0
	}
	cell := math.Floor(math.Min(76, math.Max(16, 360/float64(K))))
	longest := 0
	for i := 0; i < K; i++ {
		longest = max(longest, len([]rune(shorten(classLabel(m.Metrics, i), 16))))
	}
	labelW := float64(longest)*6.6 + 10
	rotate := float64(longest)*6.6 > cell-6
	colH := 20.0
	if rotate {
		colH = float64(longest)*4.8 + 12
	}
	ml := 26 + labelW
	mt := 22 + colH
	side := cell * float64(K)
	legendH := 40.0
	mr := 16.0
	if rotate { // the last column's slanted label reaches past the matrix
		mr = float64(longest)*4.7 + 8
	}
	W := math.Max(ml+side+mr, 300)
	H := mt + side + legendH
	svgOpen(b, id, "confusion-chart", W, H, "Confusion matrix: "+m.Name,
		fmt.Sprintf("%d by %d confusion matrix; rows are true classes, columns predicted classes; shade is the share of the true class", K, K))
	fmt.Fprintf(b, "<text class=\"title\" x=\"%s\" y=\"13\" text-anchor=\"middle\">predicted</text>", num(ml+side/2))
	fmt.Fprintf(b, "<text class=\"title\" x=\"12\" y=\"%s\" text-anchor=\"middle\" transform=\"rotate(-90 12 %s)\">true</text>\n", num(mt+side/2), num(mt+side/2))
	for j := 0; j < K; j++ {
		l := classLabel(m.Metrics, j)
		cx := ml + (float64(j)+0.5)*cell
		if rotate {
			y := mt - 6
			fmt.Fprintf(b, "<text x=\"%s\" y=\"%s\" text-anchor=\"start\" transform=\"rotate(-45 %s %s)\">%s<title>%s</title></text>\n",
				num(cx), num(y), num(cx), num(y), esc(shorten(l, 16)), esc(l))
		} else {
			fmt.Fprintf(b, "<text x=\"%s\" y=\"%s\" text-anchor=\"middle\">%s<title>%s</title></text>\n", num(cx), num(mt-7), esc(shorten(l, 16)), esc(l))
		}
	}
	font := math.Min(13, cell*0.3)
	for i, row := range cm {
		l := classLabel(m.Metrics, i)
		fmt.Fprintf(b, "<text x=\"%s\" y=\"%s\" text-anchor=\"end\">%s<title>%s</title></text>\n", num(ml-6), num(mt+(float64(i)+0.5)*cell+4), esc(shorten(l, 16)), esc(l))
		var total int64
		for _, v := range row {
			total += v
		}
		for j := 0; j < K; j++ {
			var v int64
			if j < len(row) {
				v = row[j]
			}
			share := 0.0
			if total > 0 {
				share = float64(v) / float64(total)
			}
			x, y := ml+float64(j)*cell, mt+float64(i)*cell
			fmt.Fprintf(b, "<rect class=\"cell\" x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\" fill=\"%s\" stroke=\"#fff\" stroke-width=\"1\"><title>true %s, predicted %s: %s (%s of true %s)</title></rect>",
				num(x), num(y), num(cell), num(cell), blueShade(share), esc(l), esc(classLabel(m.Metrics, j)), thousands(v), pct(share), esc(l))
			if cell >= 24 { // smaller cells cannot hold a readable number; the tooltip has it
				fill := "#1f2328"
				if share > 0.5 {
					fill = "#ffffff"
				}
				fmt.Fprintf(b, "<text class=\"cell-text\" x=\"%s\" y=\"%s\" text-anchor=\"middle\" style=\"fill:%s;font-size:%spx\">%s</text>",
					num(x+cell/2), num(y+cell/2+font*0.35), fill, num(font), thousands(v))
			}
		}
		b.WriteString("\n")
	}
	// Colour key: five swatches from 0% to 100% of the true class.
	ky := mt + side + 14
	fmt.Fprintf(b, "<g class=\"legend\"><text x=\"%s\" y=\"%s\" text-anchor=\"end\">share of row</text>", num(ml-6), num(ky+10))
	for i := 0; i <= 4; i++ {
		t := float64(i) / 4
		x := ml + float64(i)*34
		fmt.Fprintf(b, "<rect x=\"%s\" y=\"%s\" width=\"34\" height=\"12\" fill=\"%s\"/><text x=\"%s\" y=\"%s\" text-anchor=\"middle\" style=\"font-size:9.5px\">%d%%</text>",
			num(x), num(ky), blueShade(t), num(x+17), num(ky+23), i*25)
	}
	b.WriteString("</g>\n</svg>\n")
	return W
}

// scatterChart plots a regression model's predictions against the true
// scores (a sample of at most ScatterPoints), with the y = x line: points
// above it were scored too high.
func scatterChart(b *strings.Builder, id string, m ModelReport) {
	r := regression(m.Metrics)
	var pts [][2]float64
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, p := range r.Points {
		x, y := float64(p[0]), float64(p[1])
		if !finite(x) || !finite(y) {
			continue
		}
		pts = append(pts, [2]float64{x, y})
		lo, hi = math.Min(lo, math.Min(x, y)), math.Max(hi, math.Max(x, y))
	}
	if len(pts) == 0 {
		emptyChart(b, id, "no points to plot")
		return
	}
	if hi-lo < 1e-9 {
		lo, hi = lo-0.5, hi+0.5
	}
	ticks, step := niceTicks(lo, hi, 5, false)
	lo, hi = math.Min(lo, ticks[0]), math.Max(hi, ticks[len(ticks)-1])
	const P = 270.0
	const ml, mt = 60.0, 16.0
	W, H := ml+P+16, mt+P+44
	sx := func(v float64) float64 { return ml + (v-lo)/(hi-lo)*P }
	sy := func(v float64) float64 { return mt + P - (v-lo)/(hi-lo)*P }
	svgOpen(b, id, "scatter-chart", W, H, "Predicted against true scores: "+m.Name,
		fmt.Sprintf("%d of %d examples; Pearson %s, MAE %s", len(pts), m.Metrics.Examples, fixed(r.Pearson, 4), fixed(r.MAE, 4)))
	for _, v := range ticks {
		fmt.Fprintf(b, "<line class=\"gridline\" x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/>", num(ml), num(sy(v)), num(ml+P), num(sy(v)))
		fmt.Fprintf(b, "<text x=\"%s\" y=\"%s\" text-anchor=\"end\">%s</text>", num(ml-6), num(sy(v)+3.5), tickLabel(v, step))
		fmt.Fprintf(b, "<text x=\"%s\" y=\"%s\" text-anchor=\"middle\">%s</text>\n", num(sx(v)), num(mt+P+15), tickLabel(v, step))
	}
	b.WriteString("<g class=\"points\" fill=\"#4e79a7\" fill-opacity=\"0.45\">")
	for _, p := range pts {
		fmt.Fprintf(b, "<circle cx=\"%s\" cy=\"%s\" r=\"2.2\"/>", num(sx(p[0])), num(sy(p[1])))
	}
	b.WriteString("</g>\n")
	fmt.Fprintf(b, "<line class=\"diagonal\" x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\" stroke=\"#57606a\" stroke-width=\"1.2\" stroke-dasharray=\"5 4\"/>\n", num(sx(lo)), num(sy(lo)), num(sx(hi)), num(sy(hi)))
	fmt.Fprintf(b, "<line class=\"axis\" x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/><line class=\"axis\" x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/>",
		num(ml), num(mt+P), num(ml+P), num(mt+P), num(ml), num(mt), num(ml), num(mt+P))
	fmt.Fprintf(b, "<text x=\"%s\" y=\"%s\" text-anchor=\"middle\">true score</text>", num(ml+P/2), num(mt+P+32))
	fmt.Fprintf(b, "<text x=\"14\" y=\"%s\" text-anchor=\"middle\" transform=\"rotate(-90 14 %s)\">predicted score</text>\n", num(mt+P/2), num(mt+P/2))
	b.WriteString("</svg>\n")
	fmt.Fprintf(b, "<div class=\"cap\">Pearson %s · Spearman %s · MSE %s · MAE %s · mean residual %s · %s of %s examples plotted</div>\n",
		fixed(r.Pearson, 4), fixed(r.Spearman, 4), fixed(r.MSE, 4), fixed(r.MAE, 4), signed(r.MeanResidual, 4), thousands(int64(len(pts))), thousands(m.Metrics.Examples))
}
