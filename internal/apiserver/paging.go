package apiserver

// Heroku's list paging. A list request may carry
//
//	Range: <field> <first>..<last>; max=N, order=asc|desc
//
// (the field may be left out, as heroku-go does with an empty
// ListRange.Field; first may be "]v", meaning after v; the CLI separates
// the parameters with "," or ";"). The answer is sorted by the field, holds
// at most max items (200 by default, 1000 at most) and, when more follow,
// is a 206 with `Next-Range: <field> ]<last sent>..; max=N, order=...`.
// Every list answers Accept-Ranges (its fields) and, when not empty,
// Content-Range (the first and last values sent).

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	defaultPageSize = 200
	maxPageSize     = 1000
)

// pageField is one field a list can be ranged by: its values are unique
// and ordered by compare (text order when nil).
type pageField[T any] struct {
	name    string
	numeric bool // values must be integers
	key     func(T) string
	cmp     func(a, b string) int
}

// byString ranges a list by a string field.
func byString[T any](name string, key func(T) string) pageField[T] {
	return pageField[T]{name: name, key: key}
}

// byNumber ranges a list by an integer field (a release's version).
func byNumber[T any](name string, key func(T) int) pageField[T] {
	return pageField[T]{name: name, numeric: true, key: func(v T) string { return strconv.Itoa(key(v)) }, cmp: func(a, b string) int {
		x, _ := strconv.ParseInt(a, 10, 64)
		y, _ := strconv.ParseInt(b, 10, 64)
		return cmp.Compare(x, y)
	}}
}

// byDynoName ranges dynos by name in the order people read them: by
// process type, then by number (web.2 before web.10).
func byDynoName[T any](name string, key func(T) string) pageField[T] {
	return pageField[T]{name: name, key: key, cmp: func(a, b string) int {
		ta, na, _ := strings.Cut(a, ".")
		tb, nb, _ := strings.Cut(b, ".")
		x, errA := strconv.Atoi(na)
		y, errB := strconv.Atoi(nb)
		if ta != tb || errA != nil || errB != nil {
			return strings.Compare(a, b)
		}
		return cmp.Compare(x, y)
	}}
}

// byTime ranges a list by a timestamp, written fixed-width so that the
// text order is the time order.
func byTime[T any](name string, key func(T) time.Time) pageField[T] {
	return pageField[T]{name: name, key: func(v T) string { return key(v).UTC().Format("2006-01-02T15:04:05.000000000Z") }}
}

func (f pageField[T]) compare(a, b string) int {
	if f.cmp != nil {
		return f.cmp(a, b)
	}
	return strings.Compare(a, b)
}

// listRange is a parsed Range header.
type listRange struct {
	field          string // "" = the list's default
	first, last    string // "" = open
	firstExclusive bool
	max            int
	desc           bool
}

// parseListRange reads a Range header loosely; an empty one is the
// default range.
func parseListRange(h string) (listRange, error) {
	rg := listRange{max: defaultPageSize}
	h = strings.TrimSpace(h)
	if h == "" {
		return rg, nil
	}
	head, params, _ := strings.Cut(h, ";")
	fields := strings.Fields(head)
	span := ""
	switch {
	case len(fields) == 1 && strings.Contains(fields[0], ".."):
		span = fields[0]
	case len(fields) == 1:
		rg.field = fields[0]
	case len(fields) == 2:
		rg.field, span = fields[0], fields[1]
	default:
		return rg, badRequest("Range %q is invalid: write it as \"<field> <first>..<last>; max=N, order=asc|desc\", e.g. \"id ..; max=10\".", h)
	}
	if span != "" {
		first, last, ok := strings.Cut(span, "..")
		if !ok {
			return rg, badRequest("Range %q is invalid: write the span as first..last (either may be empty).", h)
		}
		if strings.HasPrefix(first, "]") {
			rg.firstExclusive, first = true, first[1:]
		}
		rg.first, rg.last = first, last
	}
	for _, p := range strings.FieldsFunc(params, func(r rune) bool { return r == ',' || r == ';' }) {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch k {
		case "max":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return rg, badRequest("Range %q is invalid: max must be a positive number.", h)
			}
			rg.max = min(n, maxPageSize)
		case "order":
			switch v {
			case "asc":
				rg.desc = false
			case "desc":
				rg.desc = true
			default:
				return rg, badRequest("Range %q is invalid: order must be asc or desc.", h)
			}
		}
	}
	return rg, nil
}

// writePage answers a list: items ranged and paged by the request's Range
// header over fields (the first is the default). It writes 200, or 206 with
// Next-Range when items remain.
func writePage[T any](w http.ResponseWriter, r *http.Request, items []T, fields ...pageField[T]) error {
	rg, err := parseListRange(r.Header.Get("Range"))
	if err != nil {
		return err
	}
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	f := fields[0]
	if rg.field != "" {
		i := slices.Index(names, rg.field)
		if i < 0 {
			return badRequest("Range field %q is not one this list is ranged by: use %s.", rg.field, strings.Join(names, " or "))
		}
		f = fields[i]
	}
	if f.numeric {
		for _, v := range []string{rg.first, rg.last} {
			if _, err := strconv.ParseInt(v, 10, 64); v != "" && err != nil {
				return badRequest("Range %q is invalid: %s values are numbers.", r.Header.Get("Range"), f.name)
			}
		}
	}
	keyed := make([]struct {
		key  string
		item T
	}, len(items))
	for i, it := range items {
		keyed[i].key, keyed[i].item = f.key(it), it
	}
	order := func(a, b string) int { // a before b in the range's order
		if rg.desc {
			return f.compare(b, a)
		}
		return f.compare(a, b)
	}
	slices.SortStableFunc(keyed, func(a, b struct {
		key  string
		item T
	}) int {
		return order(a.key, b.key)
	})
	out := make([]T, 0, min(len(items), rg.max))
	var firstKey, lastKey string
	more := false
	for _, k := range keyed {
		if rg.first != "" && (order(k.key, rg.first) < 0 || rg.firstExclusive && order(k.key, rg.first) == 0) {
			continue
		}
		if rg.last != "" && order(k.key, rg.last) > 0 {
			continue
		}
		if len(out) == rg.max {
			more = true
			break
		}
		if len(out) == 0 {
			firstKey = k.key
		}
		out = append(out, k.item)
		lastKey = k.key
	}
	dir := "asc"
	if rg.desc {
		dir = "desc"
	}
	w.Header().Set("Accept-Ranges", strings.Join(names, ", "))
	if len(out) > 0 {
		w.Header().Set("Content-Range", fmt.Sprintf("%s %s..%s", f.name, firstKey, lastKey))
	}
	status := http.StatusOK
	if more {
		w.Header().Set("Next-Range", fmt.Sprintf("%s ]%s..; max=%d, order=%s", f.name, lastKey, rg.max, dir))
		status = http.StatusPartialContent
	}
	return writeJSON(w, status, out)
}
