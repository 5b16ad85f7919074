// Package diskqueue is a bounded, append-only FIFO of opaque records kept in a
// directory: the source of truth for MQTT messages that the broker has not
// acknowledged yet.
//
// Layout: segment files named "<first record id, 20 digits>.seg" and a "head"
// file with the id of the oldest record not yet acknowledged (written to a
// temporary file and renamed). Records get monotonically increasing ids.
//
// Record framing: [4-byte magic][8-byte id][4-byte length][4-byte CRC-32C of
// id, length and payload][payload], little-endian. The magic lets a reader find
// the next record after a damaged one, and the id in the header keeps every
// later record's id right, so that one bad record costs that record only (and
// the head, which is an id, still means what it meant).
//
// Durability: Append writes to the page cache (a process crash loses nothing);
// Sync fsyncs the active segment and persists the head. The owner calls Sync
// periodically (batch policy) and Close calls it once more, so a power loss
// loses at most the records appended since the last Sync. A head that was not
// persisted makes records that were already acknowledged come again after a
// restart: duplicates, never losses.
//
// Bound: the bytes of live records (header included) never exceed MaxBytes;
// Append drops the oldest records to make room and reports how many. Disk use
// is at most MaxBytes plus one segment of already-acknowledged records. When the
// file system itself is full, Append first deletes acknowledged data, then drops
// the oldest records a segment at a time until the record fits (ErrNoSpace when
// nothing is left to free).
//
// A Queue is safe for concurrent use.
package diskqueue

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/stardetr/stardetr/internal/atomicfile"
)

const (
	headerSize   = 20 // magic, id, length, CRC
	segSuffix    = ".seg"
	headFile     = "head"
	minSegment   = 64 << 10
	maxSegment   = 4 << 20
	segmentRatio = 16 // a segment is MaxBytes/segmentRatio, clamped to [minSegment, maxSegment]
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// magic starts every record. Read as a little-endian length it is above 3.8 GB, larger than
// any record, so the first bytes of a segment also tell the framing apart.
var magic = [4]byte{0x53, 0x44, 0x51, 0xe5} // "SDQ" 0xe5

// ErrNoSpace is returned by Append when the file system is full and no acknowledged or
// queued record is left to delete: the record was not stored.
var ErrNoSpace = errors.New("diskqueue: no space left on the file system")

// CorruptError is returned by ReadFrom for a record whose bytes changed on disk after Open
// checked them; the record is removed from the queue, and the next ReadFrom goes on.
type CorruptError struct {
	ID      uint64
	Segment string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("diskqueue: record %d in %s fails its checksum: skipped", e.ID, e.Segment)
}

// ErrTooLarge is returned by Append for a record that could never fit.
var ErrTooLarge = errors.New("diskqueue: record larger than the queue")

// ErrClosed is returned after Close.
var ErrClosed = errors.New("diskqueue: closed")

// Record is one queued record. Data is only valid until the next call that
// passes the same buffer.
type Record struct {
	ID   uint64
	Data []byte
}

// Recovery says what Open found.
type Recovery struct {
	Records        int      // live records loaded
	TruncatedBytes int64    // bytes of a torn record cut from segment tails (a crash mid-write)
	BadHead        bool     // the head file was unreadable; everything on disk is live again
	Damaged        []Damage // segments with corrupt records followed by good ones
}

// Damage is what one segment lost to corrupt records.
type Damage struct {
	Segment string
	Records int   // unacknowledged records lost (from the ids around the damage)
	Bytes   int64 // bytes skipped
}

type segment struct {
	first uint64 // id of its first record
	path  string
	rd    *os.File // read handle, opened lazily
}

type entry struct {
	id  uint64
	seg *segment
	off int64
	n   int32 // payload length
}

// Queue is a bounded on-disk FIFO.
type Queue struct {
	syncMu   sync.Mutex // serialises Sync and Close's final sync
	mu       sync.Mutex
	dir      string
	maxBytes int64
	segBytes int64

	segs       []*segment // oldest first; the last is the one appended to
	wr         *os.File   // write handle of the last segment
	wrSize     int64
	entries    []entry // live records, oldest first
	live       int64   // bytes of live records including headers
	next       uint64  // id of the next appended record
	head       uint64  // records with id < head are acknowledged or dropped
	savedHead  uint64
	unsynced   bool
	wbuf       []byte
	notify     chan struct{}
	dropped    uint64
	corrupt    uint64
	noSpace    uint64
	fullDrops  uint64
	closed     bool
	recovered  Recovery
	fsyncCount uint64
}

// Open opens (or creates) the queue in dir, loading what a previous run left.
func Open(dir string, maxBytes int64) (*Queue, error) {
	if maxBytes < minSegment {
		return nil, fmt.Errorf("diskqueue: size limit %d bytes is below the minimum %d", maxBytes, minSegment)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("diskqueue: create %s: %w", dir, err)
	}
	seg := maxBytes / segmentRatio
	seg = max(minSegment, min(seg, maxSegment))
	q := &Queue{dir: dir, maxBytes: maxBytes, segBytes: seg, notify: make(chan struct{}, 1)}
	if err := q.load(); err != nil {
		q.closeFiles()
		return nil, err
	}
	if err := q.newSegment(); err != nil {
		q.closeFiles()
		return nil, err
	}
	return q, nil
}

func (q *Queue) load() error {
	head, err := readHead(filepath.Join(q.dir, headFile))
	if err != nil {
		q.recovered.BadHead = true
		head = 0
	}
	names, err := filepath.Glob(filepath.Join(q.dir, "*"+segSuffix))
	if err != nil {
		return fmt.Errorf("diskqueue: list %s: %w", q.dir, err)
	}
	type found struct {
		first uint64
		path  string
	}
	var segs []found
	for _, p := range names {
		first, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(p), segSuffix), 10, 64)
		if err != nil {
			continue // not ours
		}
		segs = append(segs, found{first, p})
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].first < segs[j].first })
	q.head = head
	q.next = head
	for i, f := range segs {
		if i+1 < len(segs) && segs[i+1].first <= head {
			// Every record in it precedes the head: acknowledged already.
			if err := os.Remove(f.path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("diskqueue: remove %s: %w", f.path, err)
			}
			continue
		}
		s := &segment{first: f.first, path: f.path}
		last, err := q.scan(s)
		if err != nil {
			return err
		}
		if last == f.first { // empty segment
			_ = os.Remove(f.path)
			continue
		}
		q.segs = append(q.segs, s)
		q.next = max(q.next, last)
	}
	q.savedHead = q.head
	q.recovered.Records = len(q.entries)
	return nil
}

// scan indexes the records of s with id >= head and returns the id after its last record.
func (q *Queue) scan(s *segment) (uint64, error) {
	b, err := os.ReadFile(s.path)
	if err != nil {
		return 0, fmt.Errorf("diskqueue: read %s: %w", s.path, err)
	}
	next, end := q.scanFramed(s, b)
	if end < int64(len(b)) {
		q.recovered.TruncatedBytes += int64(len(b)) - end
		if err := os.Truncate(s.path, end); err != nil {
			return 0, fmt.Errorf("diskqueue: truncate torn tail of %s: %w", s.path, err)
		}
	}
	return next, nil
}

// scanFramed indexes a segment of magic-framed records, stepping over damaged ones. It
// returns the id after the last good record and the end of the last good record: what
// follows it is a torn tail.
func (q *Queue) scanFramed(s *segment, b []byte) (next uint64, end int64) {
	next = s.first
	var dmg Damage
	off := 0
	for off < len(b) {
		id, n, ok := DecodeHeader(b[off:], q.maxBytes)
		if !ok || id < next {
			// Resynchronise: the next offset where a whole, checked record starts.
			k := resync(b, off+1, next, q.maxBytes)
			if k < 0 {
				break // nothing good after it: a torn tail
			}
			id, _, _ = DecodeHeader(b[k:], q.maxBytes)
			dmg.Bytes += int64(k - off)
			if from := max(next, q.head); id > from {
				dmg.Records += int(id - from)
			}
			off = k
			continue
		}
		if id >= q.head {
			q.entries = append(q.entries, entry{id: id, seg: s, off: int64(off), n: int32(n)})
			q.live += headerSize + int64(n)
		}
		next = id + 1
		off += headerSize + n
		end = int64(off)
	}
	if dmg.Bytes > 0 {
		dmg.Segment = s.path
		q.recovered.Damaged = append(q.recovered.Damaged, dmg)
	}
	return next, end
}

// resync returns the first offset >= from where a checked record with an id >= minID
// starts, or -1.
func resync(b []byte, from int, minID uint64, maxBytes int64) int {
	for from < len(b) {
		k := bytes.Index(b[from:], magic[:])
		if k < 0 {
			return -1
		}
		from += k
		if id, _, ok := DecodeHeader(b[from:], maxBytes); ok && id >= minID {
			return from
		}
		from++
	}
	return -1
}

// DecodeHeader checks the framed record at the start of b: magic, a length within maxBytes
// and b, and the checksum. It returns the record's id and payload length.
func DecodeHeader(b []byte, maxBytes int64) (id uint64, n int, ok bool) {
	if len(b) < headerSize || !bytes.Equal(b[:4], magic[:]) {
		return 0, 0, false
	}
	id = binary.LittleEndian.Uint64(b[4:12])
	size := int64(binary.LittleEndian.Uint32(b[12:16]))
	if size > maxBytes || size > int64(len(b)-headerSize) {
		return 0, 0, false
	}
	n = int(size)
	sum := crc32.Update(crc32.Checksum(b[4:16], castagnoli), castagnoli, b[headerSize:headerSize+n])
	if sum != binary.LittleEndian.Uint32(b[16:20]) {
		return 0, 0, false
	}
	return id, n, true
}

// appendRecord appends the framed record to dst.
func appendRecord(dst []byte, id uint64, data []byte) []byte {
	dst = append(dst, magic[:]...)
	dst = binary.LittleEndian.AppendUint64(dst, id)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(data)))
	sum := crc32.Update(crc32.Checksum(dst[len(dst)-12:], castagnoli), castagnoli, data)
	dst = binary.LittleEndian.AppendUint32(dst, sum)
	return append(dst, data...)
}

func readHead(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

// Recovered says what Open found on disk.
func (q *Queue) Recovered() Recovery { return q.recovered }

// newSegment starts a new segment for appends; callers hold mu (or own q exclusively).
func (q *Queue) newSegment() error { return q.newSegmentAt(q.next) }

// newSegmentAt starts a new segment whose first record has id first.
func (q *Queue) newSegmentAt(first uint64) error {
	if q.wr != nil {
		if q.unsynced {
			if err := q.wr.Sync(); err != nil {
				return fmt.Errorf("diskqueue: sync %s: %w", q.wr.Name(), err)
			}
			q.unsynced = false
		}
		if err := q.wr.Close(); err != nil {
			return fmt.Errorf("diskqueue: close %s: %w", q.wr.Name(), err)
		}
		q.wr = nil
	}
	path := filepath.Join(q.dir, fmt.Sprintf("%020d%s", first, segSuffix))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("diskqueue: create segment: %w", err)
	}
	q.wr = f
	q.wrSize = 0
	q.segs = append(q.segs, &segment{first: first, path: path})
	return syncDir(q.dir)
}

// Append adds a record at the tail. When the queue is full it first drops the
// oldest records and returns how many; so it does when the file system is full.
func (q *Queue) Append(data []byte) (dropped int, err error) {
	size := int64(headerSize + len(data))
	if size > q.maxBytes {
		return 0, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, size, q.maxBytes)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return 0, ErrClosed
	}
	for q.live+size > q.maxBytes && len(q.entries) > 0 {
		q.dropFront()
		dropped++
	}
	if q.wr == nil || q.wrSize >= q.segBytes { // nil: a new segment could not be created
		if err := q.newSegment(); err != nil {
			q.dropped += uint64(dropped)
			if IsNoSpace(err) {
				q.noSpace++
				err = fmt.Errorf("%w: %w", ErrNoSpace, err)
			}
			return dropped, err
		}
	}
	q.wbuf = appendRecord(q.wbuf[:0], q.next, data)
	for {
		err = q.write(q.wbuf)
		if err == nil || !IsNoSpace(err) {
			break
		}
		// The file system is full: free a segment (acknowledged data first, then the oldest
		// records) and try again. Segments get smaller, so that what fits on this disk is
		// freed in quarters rather than all at once.
		q.segBytes = max(minSegment, min(q.segBytes, q.wrSize/4))
		n, freed := q.reclaim()
		dropped += n
		q.fullDrops += uint64(n)
		if !freed {
			q.noSpace++
			err = fmt.Errorf("%w: %w", ErrNoSpace, err)
			break
		}
	}
	q.dropped += uint64(dropped)
	if err != nil {
		return dropped, err
	}
	q.entries = append(q.entries, entry{id: q.next, seg: q.segs[len(q.segs)-1], off: q.wrSize, n: int32(len(data))})
	q.wrSize += size
	q.live += size
	q.next++
	q.unsynced = true
	q.removeDeadSegments()
	select {
	case q.notify <- struct{}{}:
	default:
	}
	return dropped, nil
}

// write appends b to the active segment, cutting a partial write so that later appends stay
// readable.
func (q *Queue) write(b []byte) error {
	if _, err := q.wr.Write(b); err != nil {
		_ = q.wr.Truncate(q.wrSize)
		_, _ = q.wr.Seek(q.wrSize, io.SeekStart)
		return fmt.Errorf("diskqueue: append to %s: %w", q.wr.Name(), err)
	}
	return nil
}

// IsNoSpace says whether err means the file system (or the user's quota) is full.
func IsNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// Reclaim frees disk space for another writer on a full file system, as Append does for
// itself: it deletes the oldest segment (or empties the active one) and returns how many
// records that dropped.
func (q *Queue) Reclaim() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return 0
	}
	n, _ := q.reclaim()
	q.dropped += uint64(n)
	q.fullDrops += uint64(n)
	return n
}

// reclaim frees disk space for an append on a full file system. With older segments it
// compacts the oldest (its acknowledged start goes) or, when nothing in it is acknowledged,
// deletes it, dropping its live records (counted): they are the oldest in the queue.
// With only the active segment it compacts that: the acknowledged records at its start go
// (when none is acknowledged, the oldest half is dropped first) and the live ones are written
// to a new segment. It returns the records dropped and whether space was freed.
func (q *Queue) reclaim() (dropped int, freed bool) {
	if len(q.segs) > 1 {
		if n, ok := q.compactOldest(); ok {
			return n, true
		}
		oldest := q.segs[0]
		for len(q.entries) > 0 && q.entries[0].seg == oldest {
			q.dropFront()
			dropped++
		}
		q.head = max(q.head, q.segs[1].first)
		q.removeDeadSegments()
		return dropped, true
	}
	if len(q.segs) == 0 || q.wrSize == 0 {
		return 0, false // an empty segment: nothing left to free
	}
	active := q.segs[0]
	if len(q.entries) > 0 && q.entries[0].off == 0 {
		for len(q.entries) > 0 && q.entries[0].off < q.wrSize/2 {
			q.dropFront()
			dropped++
		}
	}
	base := q.wrSize
	if len(q.entries) > 0 {
		base = q.entries[0].off
	}
	var tail []byte
	if base < q.wrSize {
		b, err := os.ReadFile(active.path)
		if err != nil || int64(len(b)) < q.wrSize {
			return dropped + q.dropAll(), q.restartActive(active, q.next)
		}
		tail = b[base:q.wrSize]
	}
	// The file goes before its successor is written: on a full disk the order matters. A
	// crash in between loses the live records being moved, which the alternative (dropping
	// them) loses anyway.
	first := q.next
	if len(q.entries) > 0 {
		first = q.entries[0].id
	}
	if !q.restartActive(active, first) {
		return dropped + q.dropAll(), false
	}
	if len(tail) > 0 {
		if err := q.write(tail); err != nil {
			return dropped + q.dropAll(), true
		}
		for i := range q.entries {
			q.entries[i].seg = q.segs[0]
			q.entries[i].off -= base
		}
		q.wrSize = int64(len(tail))
		q.unsynced = true
	}
	return dropped, true
}

// compactOldest rewrites the oldest (not active) segment without its acknowledged records
// at the start: the live ones are copied to a new file named after the first of them. It
// returns false when the segment has no acknowledged start, or could not be read, and the
// records it had to drop when the copy could not be written.
func (q *Queue) compactOldest() (dropped int, ok bool) {
	old := q.segs[0]
	if len(q.entries) == 0 || q.entries[0].seg != old || q.entries[0].off == 0 {
		return 0, false
	}
	k := 0
	for k < len(q.entries) && q.entries[k].seg == old {
		k++
	}
	base := q.entries[0].off
	last := q.entries[k-1]
	end := last.off + headerSize + int64(last.n)
	b, err := os.ReadFile(old.path)
	if err != nil || int64(len(b)) < end {
		return 0, false
	}
	tail := b[base:end]
	if old.rd != nil {
		_ = old.rd.Close()
		old.rd = nil
	}
	if err := os.Remove(old.path); err != nil {
		return 0, false
	}
	ns := &segment{first: q.entries[0].id, path: filepath.Join(q.dir, fmt.Sprintf("%020d%s", q.entries[0].id, segSuffix))}
	if err := writeSynced(ns.path, tail); err != nil {
		// Space was freed all the same; the records that were in it are gone.
		_ = os.Remove(ns.path)
		for len(q.entries) > 0 && q.entries[0].seg == old {
			q.dropFront()
			dropped++
		}
		q.segs = q.segs[1:]
		return dropped, true
	}
	for i := range k {
		q.entries[i].seg = ns
		q.entries[i].off -= base
	}
	q.segs[0] = ns
	_ = syncDir(q.dir)
	return 0, true
}

func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// restartActive deletes the active segment's file and starts a new, empty one whose first
// record id is first; false when the new one could not be created.
func (q *Queue) restartActive(active *segment, first uint64) bool {
	_ = q.wr.Close()
	q.wr = nil
	q.unsynced = false
	if active.rd != nil {
		_ = active.rd.Close()
		active.rd = nil
	}
	_ = os.Remove(active.path)
	q.segs = q.segs[:len(q.segs)-1]
	return q.newSegmentAt(first) == nil
}

// dropAll drops every live record and returns how many.
func (q *Queue) dropAll() int {
	n := len(q.entries)
	for len(q.entries) > 0 {
		q.dropFront()
	}
	q.head = q.next
	return n
}

// dropFront drops the oldest live record; callers hold mu and count it.
func (q *Queue) dropFront() {
	e := q.entries[0]
	q.live -= headerSize + int64(e.n)
	q.popFront()
	q.head = e.id + 1
}

func (q *Queue) popFront() {
	q.entries[0] = entry{}
	q.entries = q.entries[1:]
	if len(q.entries) == 0 {
		q.entries = q.entries[:0:0]
	} else if cap(q.entries) > 1024 && len(q.entries) < cap(q.entries)/4 {
		q.entries = append([]entry(nil), q.entries...)
	}
}

// removeDeadSegments deletes segments whose records all precede head. Safe
// without persisting head first: a restart finds those records gone, and
// they were acknowledged or dropped anyway.
func (q *Queue) removeDeadSegments() {
	for len(q.segs) > 1 && q.segs[1].first <= q.head {
		s := q.segs[0]
		if s.rd != nil {
			_ = s.rd.Close()
		}
		_ = os.Remove(s.path)
		q.segs = q.segs[1:]
	}
}

// Notify returns a channel that receives after an Append.
func (q *Queue) Notify() <-chan struct{} { return q.notify }

// ReadFrom returns the oldest live record whose id is >= id, reading it into buf. A record
// that fails its checksum is removed and reported as a *CorruptError.
func (q *Queue) ReadFrom(id uint64, buf []byte) (Record, bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return Record{}, false, ErrClosed
	}
	i := sort.Search(len(q.entries), func(i int) bool { return q.entries[i].id >= id })
	if i == len(q.entries) {
		return Record{}, false, nil
	}
	e := q.entries[i]
	if e.seg.rd == nil {
		f, err := os.Open(e.seg.path)
		if err != nil {
			return Record{}, false, fmt.Errorf("diskqueue: open %s: %w", e.seg.path, err)
		}
		e.seg.rd = f
	}
	hdr := headerSize
	if cap(buf) < int(e.n)+hdr {
		buf = make([]byte, int(e.n)+hdr)
	}
	buf = buf[:int(e.n)+hdr]
	if _, err := e.seg.rd.ReadAt(buf, e.off); err != nil {
		return Record{}, false, fmt.Errorf("diskqueue: read record %d from %s: %w", e.id, e.seg.path, err)
	}
	rid, n, ok := DecodeHeader(buf, q.maxBytes)
	if !ok || rid != e.id || n != int(e.n) {
		q.live -= int64(hdr) + int64(e.n)
		q.entries = append(q.entries[:i], q.entries[i+1:]...)
		q.corrupt++
		return Record{}, false, &CorruptError{ID: e.id, Segment: e.seg.path}
	}
	return Record{ID: e.id, Data: buf[hdr:]}, true, nil
}

// Ack removes every record with id <= id.
func (q *Queue) Ack(id uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if id < q.head {
		return // dropped meanwhile
	}
	for len(q.entries) > 0 && q.entries[0].id <= id {
		q.live -= headerSize + int64(q.entries[0].n)
		q.popFront()
	}
	q.head = id + 1
	q.removeDeadSegments()
}

// Head returns the id of the oldest live record (or the next id if empty).
func (q *Queue) Head() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.entries) > 0 {
		return q.entries[0].id
	}
	return q.next
}

// Stats is a snapshot of the queue's counters.
type Stats struct {
	Records int    // live records
	Bytes   int64  // live bytes including record headers
	Dropped uint64 // records dropped to make room (queue or file system full) since Open
	Corrupt uint64 // records that failed their checksum when read, since Open
	NoSpace uint64 // appends refused because the file system was full, since Open
	// DroppedNoSpace are the Dropped records dropped to make room on a full file system.
	DroppedNoSpace uint64
	Syncs          uint64 // fsyncs done by Sync
}

// Stats returns the current counters.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	return Stats{Records: len(q.entries), Bytes: q.live, Dropped: q.dropped, Corrupt: q.corrupt, NoSpace: q.noSpace,
		DroppedNoSpace: q.fullDrops, Syncs: q.fsyncCount}
}

// Sync makes appended records and the acknowledged position durable. The
// fsync runs without holding the queue's lock, so Append does not wait for
// the disk.
func (q *Queue) Sync() error {
	q.syncMu.Lock()
	defer q.syncMu.Unlock()
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return ErrClosed
	}
	f, dirty, head, saveHead := q.wr, q.unsynced, q.head, q.head != q.savedHead
	q.unsynced = false
	q.mu.Unlock()
	if dirty {
		if err := f.Sync(); err != nil {
			q.mu.Lock()
			rotated := q.wr != f // rotation synced and closed it
			if !rotated {
				q.unsynced = true
			}
			q.mu.Unlock()
			if !rotated {
				return fmt.Errorf("diskqueue: sync %s: %w", f.Name(), err)
			}
		}
	}
	if saveHead {
		if err := atomicfile.Write(filepath.Join(q.dir, headFile), []byte(strconv.FormatUint(head, 10)+"\n")); err != nil {
			return fmt.Errorf("diskqueue: persist head: %w", err)
		}
	}
	q.mu.Lock()
	if dirty {
		q.fsyncCount++
	}
	if saveHead {
		q.savedHead = head
		q.fsyncCount++
	}
	q.mu.Unlock()
	return nil
}

func (q *Queue) syncLocked() error {
	if q.unsynced {
		if err := q.wr.Sync(); err != nil {
			return fmt.Errorf("diskqueue: sync %s: %w", q.wr.Name(), err)
		}
		q.unsynced = false
		q.fsyncCount++
	}
	if q.head != q.savedHead {
		if err := atomicfile.Write(filepath.Join(q.dir, headFile), []byte(strconv.FormatUint(q.head, 10)+"\n")); err != nil {
			return fmt.Errorf("diskqueue: persist head: %w", err)
		}
		q.savedHead = q.head
		q.fsyncCount++
	}
	return nil
}

// Close syncs and closes the queue. Records stay on disk for the next Open.
func (q *Queue) Close() error {
	q.syncMu.Lock()
	defer q.syncMu.Unlock()
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil
	}
	err := q.syncLocked()
	q.closed = true
	q.closeFiles()
	return err
}

func (q *Queue) closeFiles() {
	if q.wr != nil {
		_ = q.wr.Close()
		q.wr = nil
	}
	for _, s := range q.segs {
		if s.rd != nil {
			_ = s.rd.Close()
			s.rd = nil
		}
	}
}

func syncDir(dir string) error {
	if err := atomicfile.Sync(dir); err != nil {
		return fmt.Errorf("diskqueue: sync dir %s: %w", dir, err)
	}
	return nil
}
