package bench

import (
	"reflect"
	"strings"
	"testing"
)

func TestPlaceEvenly(t *testing.T) {
	for _, tc := range []struct {
		name     string
		conns    int
		room     []int
		want     []int
		unplaced int
	}{
		{"even, unknown rooms", 200000, []int{-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1},
			[]int{18182, 18182, 18182, 18182, 18182, 18182, 18182, 18182, 18182, 18181, 18181}, 0},
		{"fleet of 16", 300000, []int{19600, 19600, 19600, 19600, 19600, 19600, 19600, 19600, 19600, 19600, 19600, 19600, 19600, 19600, 19600, 19600},
			[]int{18750, 18750, 18750, 18750, 18750, 18750, 18750, 18750, 18750, 18750, 18750, 18750, 18750, 18750, 18750, 18750}, 0},
		{"one small node", 150, []int{100, 10, 100}, []int{70, 10, 70}, 0},
		{"rooms too small", 100, []int{20, 30}, []int{20, 30}, 50},
		{"zero room", 10, []int{0, -1}, []int{0, 10}, 0},
		{"fewer conns than nodes", 2, []int{-1, -1, -1}, []int{1, 1, 0}, 0},
		{"nothing fits", 5, []int{0}, []int{0}, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, unplaced := PlaceEvenly(tc.conns, tc.room)
			if !reflect.DeepEqual(got, tc.want) || unplaced != tc.unplaced {
				t.Fatalf("PlaceEvenly(%d, %v) = %v, %d; want %v, %d", tc.conns, tc.room, got, unplaced, tc.want, tc.unplaced)
			}
			sum := unplaced
			for i, n := range got {
				sum += n
				if tc.room[i] >= 0 && n > tc.room[i] {
					t.Fatalf("node %d got %d above its room %d", i, n, tc.room[i])
				}
			}
			if sum != tc.conns {
				t.Fatalf("placed+unplaced = %d, want %d", sum, tc.conns)
			}
		})
	}
}

func TestSplitEvenly(t *testing.T) {
	for _, tc := range []struct {
		n, per int
		want   []int
	}{
		{18750, 15000, []int{9375, 9375}},
		{19000, 15000, []int{9500, 9500}},
		{15000, 15000, []int{15000}},
		{7, 3, []int{3, 2, 2}},
		{0, 5, nil},
	} {
		if got := splitEvenly(tc.n, tc.per); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("splitEvenly(%d, %d) = %v, want %v", tc.n, tc.per, got, tc.want)
		}
	}
}

func TestConnectSummary(t *testing.T) {
	var c ConnectSummary
	c.Add(ConnectSummary{Requested: 30, PerNode: []int{30}, Connected: 12, Failures: 36, Rejected503: 36, GivenUp: 18,
		FirstErrors: []string{"negotiate: status 503"}, Errors: map[string]int{"negotiate: status 503": 36}})
	c.Add(ConnectSummary{Requested: 10, PerNode: []int{5, 5}, Unplaced: 0, Connected: 10,
		FirstErrors: []string{"negotiate: status 503", "connect: ECONNREFUSED"}})
	if !c.Short() || c.Requested != 40 || c.Connected != 22 || !reflect.DeepEqual(c.PerNode, []int{35, 5}) ||
		!reflect.DeepEqual(c.FirstErrors, []string{"negotiate: status 503", "connect: ECONNREFUSED"}) {
		t.Fatalf("merged %+v", c)
	}
	s := c.String()
	for _, want := range []string{"22/40 connected", "(2 nodes: 35,5)", "18 given up", "36 failed attempts (36 × 503)", "first errors: negotiate: status 503 | connect: ECONNREFUSED"} {
		if !strings.Contains(s, want) {
			t.Errorf("%q lacks %q", s, want)
		}
	}
	if (ConnectSummary{Requested: 3, Connected: 3}).Short() {
		t.Fatal("a full run is not short")
	}
}
