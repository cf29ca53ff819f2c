package runtime

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Stats is a sample of a dyno's resource use, as Heroku's runtime metrics
// report it.
type Stats struct {
	RSSBytes   uint64 // resident anonymous memory
	CacheBytes uint64 // page cache charged to the dyno
	SwapBytes  uint64
	PgpgIn     uint64 // pages charged in, ever
	PgpgOut    uint64 // pages uncharged, ever
	// Runnable counts the dyno's tasks running or waiting for the CPU or
	// for I/O at the moment of the sample: the input of a load average.
	Runnable int
}

// Stats samples the container's memory cgroup and its tasks' states.
func (d *containerDyno) Stats() (Stats, error) {
	cs, err := d.container.Stats()
	if err != nil {
		return Stats{}, fmt.Errorf("stats of dyno %s: %w", d.spec.ID, err)
	}
	var s Stats
	if cg := cs.CgroupStats; cg != nil {
		m := cg.MemoryStats.Stats
		s.RSSBytes = m["total_rss"]
		s.CacheBytes = m["total_cache"]
		s.SwapBytes = m["total_swap"]
		s.PgpgIn = m["total_pgpgin"]
		s.PgpgOut = m["total_pgpgout"]
		if s.RSSBytes == 0 && m["anon"] != 0 { // cgroup v2 names
			s.RSSBytes, s.CacheBytes = m["anon"], m["file"]
		}
	}
	if pids, err := d.container.Processes(); err == nil {
		s.Runnable = countRunnable(pids)
	}
	return s, nil
}

// Stats samples the process group's leader: the process runtime has no
// cgroup to ask.
func (d *processDyno) Stats() (Stats, error) {
	pid := d.Pid()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return Stats{}, fmt.Errorf("stats of process %d: %w", pid, err)
	}
	var s Stats
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			s.RSSBytes = kb << 10
		}
	}
	s.Runnable = countRunnable([]int{pid})
	return s, nil
}

// countRunnable counts tasks in state R (running) or D (waiting for I/O),
// the ones Linux counts in its load average.
func countRunnable(pids []int) int {
	n := 0
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		// The state follows the command name, which ends at the last ')'.
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
			if st := b[i+2]; st == 'R' || st == 'D' {
				n++
			}
		}
	}
	return n
}
