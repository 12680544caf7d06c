package backplane

import "testing"

func TestHashSlot(t *testing.T) {
	// Values from the Redis cluster specification and CLUSTER KEYSLOT.
	for key, want := range map[string]uint16{
		"123456789":            0x31c3 % clusterSlots, // CRC16-XMODEM check value
		"foo":                  12182,
		"{user1000}.following": hashSlot("user1000"),
		"":                     0,
	} {
		if got := hashSlot(key); got != want {
			t.Errorf("hashSlot(%q) = %d, want %d", key, got, want)
		}
	}
	if hashSlot("{a}x") != hashSlot("a") {
		t.Errorf("hash tag not honoured")
	}
}
