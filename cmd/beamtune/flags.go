package main

import (
	"flag"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
)

// Every command declares its flags one way: each flag is bound to a field of
// the options value the command owns (the pipelines options struct it runs,
// such as pipelines.TrainOptions, or a small struct of its own, such as
// demoOptions) through a flagSet. The flagSet registers the flag on the
// process's flag.CommandLine and records the help section it belongs to.
//
// The Beam SDK registers its runner flags (--runner, --endpoint, --job_name,
// ...) on the same flag.CommandLine when its packages are imported, so one
// parse reads both, in the submitting process and in the workers that
// re-execute this binary. The flags a flagSet did not record are Beam's:
// help lists them last, in one section of their own.

// flagSet declares one command's flags, section by section.
type flagSet struct {
	fs       *flag.FlagSet
	sections []*flagSection
	own      map[string]bool
}

// flagSection is one heading of a command's help and its flags, in the order
// they were declared.
type flagSection struct {
	title string
	names []string
}

func newFlagSet(fs *flag.FlagSet) *flagSet {
	return &flagSet{fs: fs, own: map[string]bool{}}
}

// section opens a help section: the flags declared next are listed under title.
func (f *flagSet) section(title string) {
	f.sections = append(f.sections, &flagSection{title: title})
}

// declared records a flag just registered on f.fs under the open section.
func (f *flagSet) declared(name string) {
	if len(f.sections) == 0 {
		panic("beamtune: flag --" + name + " declared before any section")
	}
	s := f.sections[len(f.sections)-1]
	s.names = append(s.names, name)
	f.own[name] = true
}

func (f *flagSet) stringVar(p *string, name, value, usage string) {
	f.fs.StringVar(p, name, value, usage)
	f.declared(name)
}

func (f *flagSet) boolVar(p *bool, name string, value bool, usage string) {
	f.fs.BoolVar(p, name, value, usage)
	f.declared(name)
}

func (f *flagSet) intVar(p *int, name string, value int, usage string) {
	f.fs.IntVar(p, name, value, usage)
	f.declared(name)
}

func (f *flagSet) int64Var(p *int64, name string, value int64, usage string) {
	f.fs.Int64Var(p, name, value, usage)
	f.declared(name)
}

func (f *flagSet) float64Var(p *float64, name string, value float64, usage string) {
	f.fs.Float64Var(p, name, value, usage)
	f.declared(name)
}

// listVar declares a string list: values are comma-separated, the flag may repeat.
func (f *flagSet) listVar(p *[]string, name, usage string) {
	f.fs.Var((*listFlag)(p), name, usage)
	f.declared(name)
}

// repeatVar declares a repeatable string flag whose values may contain commas.
func (f *flagSet) repeatVar(p *[]string, name, usage string) {
	f.fs.Var((*repeatFlag)(p), name, usage)
	f.declared(name)
}

// listFlag is a repeatable or comma-separated string list flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// repeatFlag is a repeatable string flag whose values may contain commas.
type repeatFlag []string

func (r *repeatFlag) String() string { return strings.Join(*r, " ") }

func (r *repeatFlag) Set(v string) error {
	*r = append(*r, v)
	return nil
}

// beamFlagsTitle heads the last section of every command's help.
const beamFlagsTitle = "Beam runner flags (accepted by every command)"

// writeFlags writes the help of f's own flags, section by section, then of
// every other flag registered on f.fs (Beam's), sorted by name.
func (f *flagSet) writeFlags(w io.Writer) {
	for _, s := range f.sections {
		if len(s.names) == 0 {
			continue
		}
		fmt.Fprintf(w, "%s:\n", s.title)
		for _, n := range s.names {
			writeFlag(w, f.fs.Lookup(n))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "%s:\n", beamFlagsTitle)
	fmt.Fprintln(w, "  (without --runner, a pipeline runs on prism, in this process)")
	f.fs.VisitAll(func(fl *flag.Flag) {
		if !f.own[fl.Name] {
			writeFlag(w, fl)
		}
	})
}

// helpWidth is the width help text is wrapped to.
const helpWidth = 80

// writeFlag writes one flag: the flag and the type of its value, then its
// help text and default, indented and wrapped.
func writeFlag(w io.Writer, fl *flag.Flag) {
	typ, usage := flag.UnquoteUsage(fl)
	switch fl.Value.(type) {
	case *listFlag:
		typ = "list"
	case *repeatFlag:
		typ = "value"
	}
	head := "  --" + fl.Name
	if typ != "" {
		head += " " + typ
	}
	fmt.Fprintln(w, head)
	const indent = "      "
	width := helpWidth - len(indent)
	var lines []string
	for _, line := range strings.Split(usage, "\n") {
		lines = append(lines, wrap(line, width)...)
	}
	if !isZeroValue(fl) {
		d := fl.DefValue
		if g, ok := fl.Value.(flag.Getter); ok {
			if _, isString := g.Get().(string); isString {
				d = strconv.Quote(d)
			}
		}
		// The default is not broken across lines: it ends the last line
		// when it fits there, else it has a line of its own.
		d = "(default " + d + ")"
		if last := len(lines) - 1; len(lines[last])+1+len(d) <= width {
			lines[last] += " " + d
		} else {
			lines = append(lines, d)
		}
	}
	for _, l := range lines {
		fmt.Fprintln(w, indent+l)
	}
}

// isZeroValue tells whether a flag's default is its type's zero value, which
// help leaves out (as the flag package's PrintDefaults does).
func isZeroValue(fl *flag.Flag) (zero bool) {
	defer func() {
		if recover() != nil { // a Value whose zero value cannot print: show the default
			zero = false
		}
	}()
	typ := reflect.TypeOf(fl.Value)
	var z reflect.Value
	if typ.Kind() == reflect.Pointer {
		z = reflect.New(typ.Elem())
	} else {
		z = reflect.Zero(typ)
	}
	return fl.DefValue == z.Interface().(flag.Value).String()
}

// wrap splits text into lines of at most width bytes at spaces; a word
// longer than width gets a line of its own.
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(text) {
		switch {
		case line == "":
			line = word
		case len(line)+1+len(word) <= width:
			line += " " + word
		default:
			lines = append(lines, line)
			line = word
		}
	}
	return append(lines, line)
}
