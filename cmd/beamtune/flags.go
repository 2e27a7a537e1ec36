package main

import (
	"flag"
	"strings"
)

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

func listVar(fs *flag.FlagSet, p *[]string, name, usage string) {
	fs.Var((*listFlag)(p), name, usage)
}

// repeatFlag is a repeatable string flag whose values may contain commas.
type repeatFlag []string

func (r *repeatFlag) String() string { return strings.Join(*r, " ") }

func (r *repeatFlag) Set(v string) error {
	*r = append(*r, v)
	return nil
}
