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
