package auth

import (
	"errors"
	"fmt"
)

// MinKeyBytes is the shortest access or token key accepted: an HS256 key
// shorter than the hash (32 bytes) weakens every token signed with it.
const MinKeyBytes = 32

// ErrWeakKey: a key is too short or a published example.
var ErrWeakKey = errors.New("weak key")

// placeholderKeys are example keys from this project's documentation and
// deploy files: anyone can read them, so they protect nothing.
var placeholderKeys = []string{
	"change-me-to-a-long-random-secret", // deploy/edgeplane.env.example
}

// CheckKey refuses a key that protects nothing: shorter than MinKeyBytes,
// or a published placeholder. An empty key is for the caller to decide
// (edgeplane: open access).
func CheckKey(key string) error {
	for _, p := range placeholderKeys {
		if key == p {
			return fmt.Errorf("%w: this is the example placeholder, replace it with a random secret (e.g. openssl rand -base64 48)", ErrWeakKey)
		}
	}
	if len(key) < MinKeyBytes {
		return fmt.Errorf("%w: %d bytes, at least %d are needed (e.g. openssl rand -base64 48)", ErrWeakKey, len(key), MinKeyBytes)
	}
	return nil
}
