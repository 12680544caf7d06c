package serviceproto

import "testing"

// TestClaimTypeMapping: the short JWT names the SDK signs map back to the
// .NET claim types it reads, and the other way round.
func TestClaimTypeMapping(t *testing.T) {
	for short, long := range map[string]string{
		"nameid":      ClaimNameIdentifier,
		"sub":         ClaimNameIdentifier,
		"unique_name": ClaimName,
		"role":        ClaimRole,
		"roles":       ClaimRole,
		"email":       ClaimEmail,
		"upn":         "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
		"asrs.s.uid":  "asrs.s.uid",
		"custom":      "custom",
	} {
		if got := LongClaimType(short); got != long {
			t.Errorf("LongClaimType(%q) = %q, want %q", short, got, long)
		}
	}
	for long, short := range map[string]string{
		ClaimNameIdentifier: "nameid",
		ClaimName:           "unique_name",
		ClaimRole:           "role",
		"custom":            "custom",
	} {
		if got := ShortClaimType(long); got != short {
			t.Errorf("ShortClaimType(%q) = %q, want %q", long, got, short)
		}
	}
	for short := range shortToLong {
		if LongClaimType(ShortClaimType(LongClaimType(short))) != LongClaimType(short) {
			t.Errorf("%q does not map back", short)
		}
	}
}
