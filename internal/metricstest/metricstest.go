// Package metricstest scrapes a Prometheus /metrics endpoint in tests and
// gives its series as a map, so a test can check names, labels and values.
package metricstest

import (
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Series are the samples of one scrape by series name: `name` or
// `name{a="x",b="y"}` with the labels sorted by name. Histograms and
// summaries give name_count and name_sum (and histograms name_bucket
// with le).
type Series map[string]float64

// Scrape GETs url (a /metrics endpoint), checks it answers 200 in the
// text format, and returns its series and the raw text.
func Scrape(t testing.TB, url string) (Series, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s: %s", url, resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("scrape %s: Content-Type %q, want the text format", url, ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("scrape %s: not the Prometheus text format: %v\n%s", url, err, body)
	}
	out := Series{}
	for name, f := range fams {
		for _, m := range f.Metric {
			switch {
			case m.Counter != nil:
				out[Key(name, labels(m)...)] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[Key(name, labels(m)...)] = m.Gauge.GetValue()
			case m.Untyped != nil:
				out[Key(name, labels(m)...)] = m.Untyped.GetValue()
			case m.Histogram != nil:
				out[Key(name+"_count", labels(m)...)] = float64(m.Histogram.GetSampleCount())
				out[Key(name+"_sum", labels(m)...)] = m.Histogram.GetSampleSum()
				for _, b := range m.Histogram.Bucket {
					le := strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64)
					out[Key(name+"_bucket", append(labels(m), "le", le)...)] = float64(b.GetCumulativeCount())
				}
			case m.Summary != nil:
				out[Key(name+"_count", labels(m)...)] = float64(m.Summary.GetSampleCount())
				out[Key(name+"_sum", labels(m)...)] = m.Summary.GetSampleSum()
			}
		}
	}
	return out, string(body)
}

func labels(m *dto.Metric) []string {
	var kv []string
	for _, l := range m.Label {
		kv = append(kv, l.GetName(), l.GetValue())
	}
	return kv
}

// Key is the series name of name with the label pairs kv (name, value,
// name, value...), in any order.
func Key(name string, kv ...string) string {
	if len(kv) == 0 {
		return name
	}
	pairs := make([]string, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		pairs = append(pairs, kv[i]+"="+strconv.Quote(kv[i+1]))
	}
	slices.Sort(pairs)
	return name + "{" + strings.Join(pairs, ",") + "}"
}

// Has reports whether a series of name exists whose labels include kv.
func (s Series) Has(name string, kv ...string) bool {
	_, ok := s.Find(name, kv...)
	return ok
}

// Find returns the value of the first series of name whose labels include
// kv (in key order) and whether there is one.
func (s Series) Find(name string, kv ...string) (float64, bool) {
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	slices.Sort(keys)
next:
	for _, k := range keys {
		if k != name && !strings.HasPrefix(k, name+"{") {
			continue
		}
		for i := 0; i+1 < len(kv); i += 2 {
			pair := kv[i] + "=" + strconv.Quote(kv[i+1])
			if !strings.Contains(k, "{"+pair) && !strings.Contains(k, ","+pair) {
				continue next
			}
		}
		return s[k], true
	}
	return 0, false
}
