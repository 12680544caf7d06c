package backplane

import "strings"

// Redis Cluster hash slots (cluster spec, appendix A): CRC16-XMODEM of the
// key, or of its {hash tag}, modulo 16384. Sharded pub/sub places channels
// by the same rule, and one SSUBSCRIBE may only name channels of one slot.

const clusterSlots = 16384

var crc16tab = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i) << 8
		for j := 0; j < 8; j++ {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()

func hashSlot(key string) uint16 {
	if s := strings.IndexByte(key, '{'); s >= 0 {
		if e := strings.IndexByte(key[s+1:], '}'); e > 0 {
			key = key[s+1 : s+1+e]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc = crc<<8 ^ crc16tab[byte(crc>>8)^key[i]]
	}
	return crc % clusterSlots
}

// slotTable is a cluster node's slot placement: per slot, how many active
// channels it has and the server they are subscribed on. Its size is fixed
// (about 96 KiB), so it costs nothing per connection. Guarded by r.mu.
type slotTable struct {
	use   [clusterSlots]int32
	at    [clusterSlots]uint16 // 1 + index in addrs; 0: not placed
	addrs []string
	index map[string]uint16
}

func newSlotTable() *slotTable { return &slotTable{index: make(map[string]uint16)} }

// addr is the server slot is placed on.
func (t *slotTable) addr(slot uint16) (string, bool) {
	if i := t.at[slot]; i != 0 {
		return t.addrs[i-1], true
	}
	return "", false
}

// on reports whether slot is placed on addr.
func (t *slotTable) on(slot uint16, addr string) bool {
	a, ok := t.addr(slot)
	return ok && a == addr
}

func (t *slotTable) place(slot uint16, addr string) {
	i, ok := t.index[addr]
	if !ok {
		t.addrs = append(t.addrs, addr)
		i = uint16(len(t.addrs))
		t.index[addr] = i
	}
	t.at[slot] = i
}

func (t *slotTable) unplace(slot uint16) { t.at[slot] = 0 }

// placedOn lists the slots placed on addr.
func (t *slotTable) placedOn(addr string) []uint16 {
	i, ok := t.index[addr]
	if !ok {
		return nil
	}
	var out []uint16
	for slot, at := range t.at {
		if at == i {
			out = append(out, uint16(slot))
		}
	}
	return out
}
