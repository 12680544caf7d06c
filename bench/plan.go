package bench

import (
	"errors"
	"fmt"
	"strings"
)

// ErrShort: a run opened fewer connections than it was asked for. The
// report says how many and why; edgebench exits non-zero on it unless
// told to accept a short run.
var ErrShort = errors.New("bench: short of the requested connections")

// MaxFirstErrors is how many distinct failure reasons a load client keeps
// in the order they first happened (LoaderStats.FirstErrors).
const MaxFirstErrors = 5

// PlaceEvenly spreads conns over nodes whose room for more connections is
// room[i] (negative: unknown, unbounded): as evenly as the rooms allow and
// never above a node's room. What fits nowhere is unplaced; such
// connections are never attempted, and the run is short by them.
func PlaceEvenly(conns int, room []int) (perNode []int, unplaced int) {
	perNode = make([]int, len(room))
	left := conns
	open := make([]int, 0, len(room)) // nodes that may take more
	for i, r := range room {
		if r != 0 {
			open = append(open, i)
		}
	}
	// Water-filling: give every open node an equal share; a node whose
	// room is below its share takes its room and leaves the rest to the
	// others, and the shares are computed again.
	for left > 0 && len(open) > 0 {
		share := left / len(open)
		capped := false
		next := open[:0:0]
		for _, i := range open {
			if free := room[i] - perNode[i]; room[i] >= 0 && free <= share {
				perNode[i] += free
				left -= free
				capped = true
				continue
			}
			next = append(next, i)
		}
		open = next
		if capped {
			continue
		}
		extra := left % len(open)
		for k, i := range open {
			perNode[i] += share
			if k < extra {
				perNode[i]++
			}
		}
		left = 0
	}
	return perNode, left
}

// splitEvenly splits n into parts of at most per, as equal as possible.
func splitEvenly(n, per int) []int {
	if n <= 0 {
		return nil
	}
	k := (n + per - 1) / per
	out := make([]int, k)
	for i := range out {
		out[i] = n / k
		if i < n%k {
			out[i]++
		}
	}
	return out
}

// ConnectSummary says how a load's connections went: what was asked, what
// the nodes had room for, what opened, and why the rest did not.
type ConnectSummary struct {
	Requested int `json:"requested"`
	// PerNode is how many connections were planned on each node (never
	// above its room); Unplaced those that fit on no node.
	PerNode  []int `json:"per_node,omitempty"`
	Unplaced int   `json:"unplaced"`
	// Connected is open at the end of the connect phase.
	Connected   int `json:"connected"`
	Attempts    int `json:"attempts"`
	Failures    int `json:"failed_attempts"`
	Rejected503 int `json:"rejected_503"`
	GivenUp     int `json:"given_up"`
	Dropped     int `json:"dropped"`
	// FirstErrors are the first distinct failure reasons, in order;
	// Errors counts every reason.
	FirstErrors []string       `json:"first_errors,omitempty"`
	Errors      map[string]int `json:"errors,omitempty"`
}

// Short reports whether fewer connections opened than were requested.
func (c ConnectSummary) Short() bool { return c.Connected < c.Requested }

// Add merges another load's summary into c (several fleets of one run).
func (c *ConnectSummary) Add(o ConnectSummary) {
	c.Requested += o.Requested
	c.Unplaced += o.Unplaced
	c.Connected += o.Connected
	c.Attempts += o.Attempts
	c.Failures += o.Failures
	c.Rejected503 += o.Rejected503
	c.GivenUp += o.GivenUp
	c.Dropped += o.Dropped
	if len(c.PerNode) < len(o.PerNode) {
		c.PerNode = append(c.PerNode, make([]int, len(o.PerNode)-len(c.PerNode))...)
	}
	for i, n := range o.PerNode {
		c.PerNode[i] += n
	}
	c.FirstErrors = mergeFirst(c.FirstErrors, o.FirstErrors)
	for k, v := range o.Errors {
		if c.Errors == nil {
			c.Errors = map[string]int{}
		}
		c.Errors[k] += v
	}
}

func mergeFirst(a, b []string) []string {
	for _, e := range b {
		if len(a) >= MaxFirstErrors {
			break
		}
		dup := false
		for _, x := range a {
			dup = dup || x == e
		}
		if !dup {
			a = append(a, e)
		}
	}
	return a
}

// String is the one-line account printed under every table, e.g.
// "12/30 connected (1 node: 30), 18 given up, 36 failed attempts (36 × 503); first errors: negotiate: status 503".
func (c ConnectSummary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d/%d connected", c.Connected, c.Requested)
	if len(c.PerNode) > 0 {
		parts := make([]string, len(c.PerNode))
		for i, n := range c.PerNode {
			parts[i] = fmt.Sprint(n)
		}
		s := "s"
		if len(parts) == 1 {
			s = ""
		}
		fmt.Fprintf(&b, " (%d node%s: %s)", len(parts), s, strings.Join(parts, ","))
	}
	if c.Unplaced > 0 {
		fmt.Fprintf(&b, ", %d unplaced (no node had room)", c.Unplaced)
	}
	if c.GivenUp > 0 {
		fmt.Fprintf(&b, ", %d given up", c.GivenUp)
	}
	if c.Dropped > 0 {
		fmt.Fprintf(&b, ", %d dropped", c.Dropped)
	}
	if c.Failures > 0 {
		fmt.Fprintf(&b, ", %d failed attempts (%d × 503)", c.Failures, c.Rejected503)
	}
	if len(c.FirstErrors) > 0 {
		fmt.Fprintf(&b, "; first errors: %s", strings.Join(c.FirstErrors, " | "))
	}
	return b.String()
}
