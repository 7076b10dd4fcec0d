package testenv

import (
	"sync"
	"time"
)

// OffsetClock is the real clock plus an offset a test moves forward, to
// close time buckets without waiting for them. Safe for concurrent use.
type OffsetClock struct {
	mu  sync.Mutex
	off time.Duration
}

// Now is the real time plus the offset.
func (c *OffsetClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

// Advance moves the clock forward by d.
func (c *OffsetClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}
