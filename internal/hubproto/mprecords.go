package hubproto

import "fmt"

// MessagePackRecordsToJSON appends the JSON form of src, one or more
// MessagePack records each behind its VarInt length (what an app sends for
// its MessagePack clients), to dst: each record becomes the JSON record of
// the same message, 0x1e included. Only Invocations are converted (what an
// app multicasts); their arguments go through MessagePackToJSON. Anything
// else is ErrInvalidMessage, a value JSON cannot say ErrNoJSON, a record
// that does not decode ErrInvalidMsgpack or ErrInvalidMessage; on error
// dst is returned unchanged.
//
// It runs once per message that came as MessagePack only, for all its
// JSON recipients together, never per recipient.
func MessagePackRecordsToJSON(dst, src []byte) ([]byte, error) {
	n := len(dst)
	var tmp []byte
	err := MessagePack.Split(src, func(rec []byte) error {
		m, err := MessagePack.Parse(rec)
		if err != nil {
			return err
		}
		if m.Type != TypeInvocation {
			return fmt.Errorf("%w: a %s message is not converted to JSON", ErrInvalidMessage, m.Type)
		}
		if tmp, err = MessagePackToJSON(tmp[:0], m.Arguments); err != nil {
			return err
		}
		dst, err = JSON.AppendInvocation(dst, m.InvocationID, m.Target, tmp)
		return err
	})
	if err != nil {
		return dst[:n], err
	}
	return dst, nil
}
