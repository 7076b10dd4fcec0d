package store

import (
	"slices"
	"time"

	"github.com/axiomhq/hyperloglog"

	"github.com/livemap/servicemap/pkg/model"
	"github.com/livemap/servicemap/pkg/sketch"
)

// Batch is what one source learned in one read: call and connection counts
// per edge and minute, plus node and edge metadata. A source fills a batch
// and hands it to Store.Apply in one piece, so a read that fails half-way
// adds nothing and a retried read is never counted twice.
type Batch struct {
	source model.Source
	// Edge first: one hash of the edge per call finds both its minute cells
	// and its info, and Apply looks each edge's series up once.
	edges map[model.EdgeKey]int32 // index in list
	list  []edgeCells             // in first-seen order
	last  int32                   // list index of the latest edge used (a call's AddCall and AddEdgeInfo share it)
	cells int
	// slab hands each new edge the room for its first cell, cellChunk edges
	// per allocation (most edges of a read window have one minute; an edge
	// with more moves its cells to a slice of its own).
	slab  []cell
	nodes []model.NodeInfo
}

const cellChunk = 256

// edgeCells is one edge's part of a batch.
type edgeCells struct {
	key     model.EdgeKey
	minutes []cell // sorted by minute; a read window spans a few
	info    model.EdgeInfo
	hasInfo bool
}

type cell struct {
	minute int64 // unix seconds of the minute's start
	// stats of the cell, except that the first timed call's latency is held
	// in one (its histogram bin) instead of stats.Latency: most cells of a
	// trace backfill hold one call, and Apply adds that bin to the buckets
	// without allocating and merging a one-bin histogram.
	stats   model.Stats
	one     int32
	hasOne  bool
	last    int64               // unix seconds of the latest event
	clients *hyperloglog.Sketch // distinct client keys (gateway evidence only; nil otherwise)
}

// NewBatch starts a batch for one source.
func NewBatch(source model.Source) *Batch { return NewBatchSize(source, 0) }

// NewBatchSize starts a batch for one source sized for about edges edges, so
// a source that knows its usual batch (a trace window) does not regrow it.
func NewBatchSize(source model.Source, edges int) *Batch {
	return &Batch{source: source, edges: make(map[model.EdgeKey]int32, edges), list: make([]edgeCells, 0, edges)}
}

// Reset empties the batch for the next read of the same source, keeping the
// room it grew to. Store.Apply keeps no reference into a batch, so a batch
// may be reset and refilled as soon as Apply returned.
func (b *Batch) Reset() {
	clear(b.edges)
	for i := range b.list {
		clear(b.list[i].minutes) // keep the room, drop the histograms
	}
	b.list = b.list[:0]
	b.cells = 0
	b.slab = nil // the room handed out stays with the list entries
	clear(b.nodes)
	b.nodes = b.nodes[:0]
}

// Source of the batch.
func (b *Batch) Source() model.Source { return b.source }

// edge returns the batch's entry of an edge, adding it when missing.
func (b *Batch) edge(k model.EdgeKey) *edgeCells {
	if int(b.last) < len(b.list) && b.list[b.last].key == k {
		return &b.list[b.last]
	}
	i, ok := b.edges[k]
	if !ok {
		i = int32(len(b.list))
		if len(b.list) < cap(b.list) { // a reset batch: reuse the entry's minute room
			b.list = b.list[:i+1]
			e := &b.list[i]
			*e = edgeCells{key: k, minutes: e.minutes[:0]}
		} else {
			b.list = append(b.list, edgeCells{key: k})
		}
		b.edges[k] = i
	}
	b.last = i
	return &b.list[i]
}

func (b *Batch) cell(edge model.EdgeKey, t time.Time) *cell {
	u := t.Unix()
	minute := u - mod(u, 60)
	e := b.edge(edge)
	ms := e.minutes
	var c *cell
	if n := len(ms); n > 0 && ms[n-1].minute == minute {
		c = &ms[n-1]
	} else {
		i, found := slices.BinarySearchFunc(ms, minute, func(c cell, m int64) int { return cmp64(c.minute, m) })
		if !found && cap(ms) == 0 {
			if len(b.slab) == cap(b.slab) {
				b.slab = make([]cell, 0, cellChunk)
			}
			n := len(b.slab)
			b.slab = b.slab[:n+1]
			ms = b.slab[n : n : n+1] // room for one cell, owned by this edge
		}
		if !found {
			e.minutes = slices.Insert(ms, i, cell{minute: minute})
			b.cells++
		}
		c = &e.minutes[i]
	}
	if u > c.last {
		c.last = u
	}
	return c
}

// AddCall records one call at time t. A negative or NaN latency records the
// call without a timing.
func (b *Batch) AddCall(edge model.EdgeKey, t time.Time, latencyMs float64, failed bool) {
	b.cell(edge, t).addCall(latencyMs, failed)
}

func (c *cell) addCall(latencyMs float64, failed bool) {
	c.stats.Calls++
	if failed {
		c.stats.Errors++
	}
	if latencyMs >= 0 {
		c.stats.LatencySumMs += latencyMs
		if !c.hasOne {
			c.one, c.hasOne = sketch.Index(latencyMs), true
		} else {
			c.stats.Latency.Add(latencyMs)
		}
	}
}

// addTo adds the cell's traffic to a bucket's stats.
func (c *cell) addTo(dst *model.Stats) {
	dst.Add(&c.stats)
	if c.hasOne {
		dst.Latency.AddIndex(c.one, 1)
	}
}

// addLatency adds the cell's histogram to dst.
func (c *cell) addLatency(dst *sketch.Latency) {
	dst.Merge(&c.stats.Latency)
	if c.hasOne {
		dst.AddIndex(c.one, 1)
	}
}

// AddClientCall records one call (as AddCall) and the key of its client
// (user id or address) for the distinct-client count of the edge's minute
// (gateway evidence). An empty key records the call only.
func (b *Batch) AddClientCall(edge model.EdgeKey, t time.Time, latencyMs float64, failed bool, clientKey string) {
	c := b.cell(edge, t)
	c.addCall(latencyMs, failed)
	if clientKey != "" {
		c.addClient(clientKey)
	}
}

// AddClient records a client key of a call at time t without the call.
func (b *Batch) AddClient(edge model.EdgeKey, t time.Time, key string) {
	b.cell(edge, t).addClient(key)
}

func (c *cell) addClient(key string) {
	if c.clients == nil {
		c.clients = hyperloglog.New14()
	}
	c.clients.Insert([]byte(key))
}

// AddAggregate records calls already aggregated elsewhere (a node agent's
// closed minute): stats are added, clients merged (never summed). clients
// may be nil; a sketch of another precision than 14 is refused and the
// batch left unchanged, so every sketch in the store merges with every
// other. t is any time inside the minute the aggregate covers.
func (b *Batch) AddAggregate(edge model.EdgeKey, t time.Time, stats *model.Stats, clients *hyperloglog.Sketch) error {
	var own *hyperloglog.Sketch
	if clients != nil {
		own = hyperloglog.New14()
		if err := own.Merge(clients); err != nil {
			return err
		}
	}
	c := b.cell(edge, t)
	if own != nil {
		if c.clients == nil {
			c.clients = own
		} else {
			_ = c.clients.Merge(own) // both precision 14
		}
	}
	c.stats.Add(stats)
	return nil
}

// AddConnections records n TCP connections seen at time t.
func (b *Batch) AddConnections(edge model.EdgeKey, t time.Time, n uint64) {
	b.cell(edge, t).stats.Connections += n
}

// AddNode records what the source knows of a node.
func (b *Batch) AddNode(info model.NodeInfo) { b.nodes = append(b.nodes, info) }

// AddEdgeInfo records what the source knows of an edge. Right after a call
// on the same edge (a trace source repeats the edge's protocol on every
// call) it costs no map access.
func (b *Batch) AddEdgeInfo(edge model.EdgeKey, info model.EdgeInfo) {
	e := b.edge(edge)
	e.info.Merge(info)
	e.hasInfo = true
}

// Len is the number of (edge, minute) cells.
func (b *Batch) Len() int { return b.cells }

func mod(a, m int64) int64 {
	r := a % m
	if r < 0 {
		r += m
	}
	return r
}
