package report

// Renders report.html in headless Chromium (Debian's /usr/bin/chromium;
// scripts/install-chromium.sh installs it) and checks what a person would
// see: no console errors, the SVG charts in the browser's DOM, and a
// screenshot that is a real picture. The test skips only when Chromium is
// absent; a Chromium that is there but fails is a failure.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// chromium returns the browser to use: $CHROMIUM, else Debian's path.
func chromium(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("CHROMIUM")
	if bin == "" {
		bin = "/usr/bin/chromium"
	}
	if _, err := os.Stat(bin); errors.Is(err, os.ErrNotExist) {
		t.Skipf("headless Chromium not installed at %s: run scripts/install-chromium.sh (or set CHROMIUM) to run the browser test", bin)
	}
	return bin
}

// runChromium runs one headless Chromium on url with the given extra
// flags and returns its stdout and stderr. A fresh profile per run keeps
// runs independent; HOME points at a temp dir so nothing lands in the real
// home. The browser runs in its own process group, killed when it exits so
// no helper process outlives the test.
func runChromium(t *testing.T, bin, url string, extra ...string) (stdout, stderr []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(),
		"--enable-logging=stderr", "--v=0",
	}
	args = append(append(args, extra...), url)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // stragglers of our own group; ESRCH when none
	}
	if err != nil {
		t.Fatalf("%s %s: %v\nstderr (tail):\n%s", bin, strings.Join(extra, " "), err, tail(errb.String(), 3000))
	}
	return out.Bytes(), errb.Bytes()
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// Chromium's log line: [pid:tid:MMDD/HHMMSS.micros:LEVEL:source] message.
// Console messages come as "INFO:CONSOLE:<line>]" (Chromium 156) or
// "INFO:CONSOLE(<line>)]" (older releases), whatever the console level.
var chromiumLogLine = regexp.MustCompile(`^\[\d+:\d+:\d+/\d+\.\d+:([A-Z_]+):([^\]]*)\] `)

// consoleProblems picks, from Chromium's stderr, the lines attributable
// to the page: every console message (the report has no scripts, so
// anything on its console is the browser reporting a problem: a CSP
// violation by a script or remote asset that crept in, a failed load, a
// parse error), any "Uncaught" exception, and ERROR/FATAL lines that name
// the page's URL. The rest (D-Bus, GPU and sandbox chatter of a headless
// browser in a container) is noise, counted so the log says what was
// ignored.
func consoleProblems(stderr []byte, pageURL string) (problems []string, noise int) {
	for _, line := range strings.Split(string(stderr), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		m := chromiumLogLine.FindStringSubmatch(line)
		switch {
		case m != nil && strings.HasPrefix(m[2], "CONSOLE"):
			problems = append(problems, line)
		case strings.Contains(line, "Uncaught"):
			problems = append(problems, line)
		case m != nil && (m[1] == "ERROR" || m[1] == "FATAL") && strings.Contains(line, pageURL):
			problems = append(problems, line)
		default:
			noise++
		}
	}
	return problems, noise
}

// pageServer serves pages on 127.0.0.1 and records every path asked for,
// so the test sees any request beyond the page itself.
type pageServer struct {
	*httptest.Server
	mu    sync.Mutex
	paths []string
}

func serve(t *testing.T, pages map[string][]byte) *pageServer {
	s := &pageServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.paths = append(s.paths, r.URL.Path)
		s.mu.Unlock()
		body, ok := pages[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *pageServer) requested() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.paths...)
}

// checkConsole runs Chromium on url, fails on page problems and returns
// the dumped DOM.
func checkConsole(t *testing.T, bin, url string) []byte {
	t.Helper()
	dom, stderr := runChromium(t, bin, url, "--dump-dom")
	problems, noise := consoleProblems(stderr, url)
	t.Logf("chromium stderr: %d lines attributable to the page, %d lines of browser noise ignored", len(problems), noise)
	for _, p := range problems {
		t.Errorf("browser console: %s", p)
	}
	return dom
}

// repoRoot is the module root (tests run in the package folder).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found above the package: %v", err)
	}
	return root
}

// checkScreenshot decodes the PNG and checks it is a real rendering:
// the requested size, many colours, no single colour covering nearly all
// of it, and the colours of the charts' series actually painted.
func checkScreenshot(t *testing.T, path string, w, h int, mustHave map[string][3]uint8) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	b := img.Bounds()
	if b.Dx() != w || b.Dy() != h {
		t.Errorf("screenshot is %dx%d, want %dx%d", b.Dx(), b.Dy(), w, h)
	}
	colours := map[[3]uint8]int{}
	found := map[string]int{}
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			c := [3]uint8{uint8(r >> 8), uint8(g >> 8), uint8(bl >> 8)}
			colours[c]++
			for name, want := range mustHave {
				if near(c, want, 14) {
					found[name]++
				}
			}
		}
	}
	top := 0
	for _, n := range colours {
		top = max(top, n)
	}
	share := float64(top) / float64(b.Dx()*b.Dy())
	t.Logf("screenshot %s: %dx%d, %d distinct colours, most common covers %.1f%%, series pixels %v", path, b.Dx(), b.Dy(), len(colours), 100*share, found)
	if len(colours) < 200 {
		t.Errorf("screenshot has only %d distinct colours: blank or unstyled", len(colours))
	}
	if share > 0.95 {
		t.Errorf("one colour covers %.1f%% of the screenshot: blank", 100*share)
	}
	for name := range mustHave {
		if found[name] < 150 {
			t.Errorf("screenshot shows %d pixels of the %s colour: chart not painted", found[name], name)
		}
	}
}

func near(c, want [3]uint8, tol int) bool {
	for i := range c {
		d := int(c[i]) - int(want[i])
		if d < -tol || d > tol {
			return false
		}
	}
	return true
}

func hexOf(s string) [3]uint8 {
	var c [3]uint8
	fmt.Sscanf(s, "#%02x%02x%02x", &c[0], &c[1], &c[2])
	return c
}

func TestReportBrowser(t *testing.T) {
	bin := chromium(t)
	artifacts := filepath.Join(repoRoot(t), "out", "test-artifacts")
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range fixtures {
		t.Run(f.name, func(t *testing.T) {
			r := f.build()
			dir := t.TempDir()
			if err := Write(context.Background(), dir, r); err != nil {
				t.Fatal(err)
			}
			page, err := os.ReadFile(filepath.Join(dir, HTMLFile))
			if err != nil {
				t.Fatal(err)
			}
			srv := serve(t, map[string][]byte{"/" + HTMLFile: page})
			url := srv.URL + "/" + HTMLFile

			dom := checkConsole(t, bin, url)
			doc := parseHTML(t, dom)
			if n, want := checkCharts(t, doc, r), len(elems(parseHTML(t, page), "svg", "chart")); n != want {
				t.Errorf("browser DOM has %d charts, the file %d", n, want)
			}

			shot := filepath.Join(t.TempDir(), "report.png")
			_, stderr := runChromium(t, bin, url, "--screenshot="+shot, "--window-size=1280,2400", "--hide-scrollbars")
			if problems, _ := consoleProblems(stderr, url); len(problems) > 0 {
				t.Errorf("browser console during the screenshot: %v", problems)
			}
			checkScreenshot(t, shot, 1280, 2400, map[string][3]uint8{
				"blue-series":     hexOf(trainColour), // train loss, model 1, reliability bars
				"validation-loss": hexOf(evalColour),  // only drawn by the loss charts
			})
			name := "report.png"
			if f.name != "binary" {
				name = "report-" + f.name + ".png"
			}
			data, err := os.ReadFile(shot)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(artifacts, name), data, 0o644); err != nil {
				t.Fatal(err)
			}
			// The page next to its picture, for a reviewer to open.
			if err := os.WriteFile(filepath.Join(artifacts, strings.TrimSuffix(name, ".png")+".html"), page, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("screenshot kept as %s", filepath.Join(artifacts, name))

			// Only the page itself was fetched (browsers may ask for a favicon).
			for _, p := range srv.requested() {
				if p != "/"+HTMLFile && p != "/favicon.ico" {
					t.Errorf("the page requested %s", p)
				}
			}
		})
	}
}

// TestReportBrowserConsoleCheck proves the console check can fail: a page
// that throws, and the real report with a script and a remote image
// smuggled in (its Content-Security-Policy blocks both and the browser says
// so on the console), must each be reported.
func TestReportBrowserConsoleCheck(t *testing.T) {
	bin := chromium(t)
	tampered := bytes.Replace(RenderHTML(fixtureBinary()), []byte("</body>"),
		[]byte(`<img src="http://127.0.0.1:9/remote.png"><script>document.title = "ran"</script></body>`), 1)
	srv := serve(t, map[string][]byte{
		"/broken.html":   []byte("<!DOCTYPE html><html><body><p>broken</p><script>throw new Error('x')</script></body></html>"),
		"/tampered.html": tampered,
	})
	for _, c := range []struct {
		page string
		want []string
	}{
		{"/broken.html", []string{"Uncaught Error: x"}},
		{"/tampered.html", []string{"Content Security Policy", "http://127.0.0.1:9/remote.png"}},
	} {
		url := srv.URL + c.page
		_, stderr := runChromium(t, bin, url, "--dump-dom")
		problems, _ := consoleProblems(stderr, url)
		if len(problems) == 0 {
			t.Errorf("%s: the console check found nothing; chromium stderr:\n%s", c.page, tail(string(stderr), 3000))
			continue
		}
		joined := strings.Join(problems, "\n")
		for _, w := range c.want {
			if !strings.Contains(joined, w) {
				t.Errorf("%s: problems lack %q:\n%s", c.page, w, joined)
			}
		}
		t.Logf("%s: detected as expected:\n%s", c.page, joined)
	}
}
