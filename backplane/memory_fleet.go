package backplane

import "context"

// HandleCommands implements Fleet.
func (b *Memory) HandleCommands(h CommandHandler) { b.cmd = h }

// Command implements Fleet: on a single node the command is applied here,
// now, and this node's reply returned (want is ignored: this node is the
// fleet).
func (b *Memory) Command(_ context.Context, hub string, c *Command, _ int) ([]Reply, error) {
	if b.closed.Load() {
		return nil, ErrClosed
	}
	if b.cmd == nil {
		return nil, nil
	}
	if r := b.cmd(hub, c); r != nil {
		return []Reply{*r}, nil
	}
	return nil, nil
}

// Holders implements Fleet: 0, a single node's registry is all there is.
func (b *Memory) Holders(context.Context, string, Kind, string) (int, error) { return 0, nil }
