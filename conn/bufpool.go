package conn

import "sync"

// Pooled buffers for the rare partial frame, partial HTTP request or
// fragmented message. An idle connection holds none.
var bufClasses = [...]int{512, 4 << 10, 16 << 10, 64 << 10}

var bufPools [len(bufClasses)]sync.Pool

// getBuf returns an empty buffer with capacity >= n.
func getBuf(n int) []byte {
	for i, c := range bufClasses {
		if n <= c {
			if b, ok := bufPools[i].Get().(*[]byte); ok {
				return (*b)[:0]
			}
			return make([]byte, 0, c)
		}
	}
	return make([]byte, 0, n)
}

// putBuf returns b to its pool (buffers of other sizes are dropped).
func putBuf(b []byte) {
	c := cap(b)
	for i, cl := range bufClasses {
		if c == cl {
			b = b[:0]
			bufPools[i].Put(&b)
			return
		}
	}
}

// appendPooled appends data to b, moving to a larger pooled buffer when b
// is full.
func appendPooled(b, data []byte) []byte {
	if len(b)+len(data) <= cap(b) {
		return append(b, data...)
	}
	nb := append(getBuf(len(b)+len(data)), b...)
	nb = append(nb, data...)
	if b != nil {
		putBuf(b)
	}
	return nb
}
