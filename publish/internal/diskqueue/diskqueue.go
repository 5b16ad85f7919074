// Package diskqueue is a bounded, append-only FIFO of opaque records kept in a
// directory: the source of truth for MQTT messages that the broker has not
// acknowledged yet.
//
// Layout: segment files named "<first record id, 20 digits>.seg" holding
// records of [4-byte little-endian length][4-byte CRC-32C][payload], and a
// "head" file with the id of the oldest record not yet acknowledged (written to
// a temporary file and renamed). Records get monotonically increasing ids.
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
// is at most MaxBytes plus one segment of already-acknowledged records.
//
// A Queue is safe for concurrent use.
package diskqueue

import (
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

	"github.com/stardetr/stardetr/internal/atomicfile"
)

const (
	headerSize   = 8
	segSuffix    = ".seg"
	headFile     = "head"
	minSegment   = 64 << 10
	maxSegment   = 4 << 20
	segmentRatio = 16 // a segment is MaxBytes/segmentRatio, clamped to [minSegment, maxSegment]
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

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
	Records        int   // live records loaded
	TruncatedBytes int64 // bytes of torn or corrupt records cut from segment tails
	BadHead        bool  // the head file was unreadable; everything on disk is live again
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
	f, err := os.OpenFile(s.path, os.O_RDWR, 0)
	if err != nil {
		return 0, fmt.Errorf("diskqueue: open %s: %w", s.path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("diskqueue: stat %s: %w", s.path, err)
	}
	size := st.Size()
	var hdr [headerSize]byte
	var buf []byte
	id := s.first
	off := int64(0)
	for off < size {
		if _, err := f.ReadAt(hdr[:], off); err != nil {
			break // torn header
		}
		n := int64(binary.LittleEndian.Uint32(hdr[0:4]))
		sum := binary.LittleEndian.Uint32(hdr[4:8])
		if n > q.maxBytes || off+headerSize+n > size {
			break
		}
		if int64(cap(buf)) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := f.ReadAt(buf, off+headerSize); err != nil {
			break
		}
		if crc32.Checksum(buf, castagnoli) != sum {
			break
		}
		if id >= q.head {
			q.entries = append(q.entries, entry{id: id, seg: s, off: off, n: int32(n)})
			q.live += headerSize + n
		}
		id++
		off += headerSize + n
	}
	if off < size {
		q.recovered.TruncatedBytes += size - off
		if err := f.Truncate(off); err != nil {
			return 0, fmt.Errorf("diskqueue: truncate torn tail of %s: %w", s.path, err)
		}
	}
	return id, nil
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
func (q *Queue) newSegment() error {
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
	path := filepath.Join(q.dir, fmt.Sprintf("%020d%s", q.next, segSuffix))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("diskqueue: create segment: %w", err)
	}
	q.wr = f
	q.wrSize = 0
	q.segs = append(q.segs, &segment{first: q.next, path: path})
	return syncDir(q.dir)
}

// Append adds a record at the tail. When the queue is full it first drops the
// oldest records and returns how many.
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
		e := q.entries[0]
		q.live -= headerSize + int64(e.n)
		q.popFront()
		q.head = e.id + 1
		dropped++
	}
	q.dropped += uint64(dropped)
	if q.wrSize >= q.segBytes {
		if err := q.newSegment(); err != nil {
			return dropped, err
		}
	}
	q.wbuf = q.wbuf[:0]
	q.wbuf = binary.LittleEndian.AppendUint32(q.wbuf, uint32(len(data)))
	q.wbuf = binary.LittleEndian.AppendUint32(q.wbuf, crc32.Checksum(data, castagnoli))
	q.wbuf = append(q.wbuf, data...)
	if _, err := q.wr.Write(q.wbuf); err != nil {
		// A partial write leaves a torn record; cut it so later appends stay readable.
		_ = q.wr.Truncate(q.wrSize)
		_, _ = q.wr.Seek(q.wrSize, io.SeekStart)
		return dropped, fmt.Errorf("diskqueue: append to %s: %w", q.wr.Name(), err)
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

// ReadFrom returns the oldest live record whose id is >= id, reading it into buf.
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
	if cap(buf) < int(e.n)+headerSize {
		buf = make([]byte, int(e.n)+headerSize)
	}
	buf = buf[:int(e.n)+headerSize]
	if _, err := e.seg.rd.ReadAt(buf, e.off); err != nil {
		return Record{}, false, fmt.Errorf("diskqueue: read record %d from %s: %w", e.id, e.seg.path, err)
	}
	data := buf[headerSize:]
	if crc32.Checksum(data, castagnoli) != binary.LittleEndian.Uint32(buf[4:8]) {
		return Record{}, false, fmt.Errorf("diskqueue: record %d in %s fails its checksum", e.id, e.seg.path)
	}
	return Record{ID: e.id, Data: data}, true, nil
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
	Dropped uint64 // records dropped to make room since Open
	Syncs   uint64 // fsyncs done by Sync
}

// Stats returns the current counters.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	return Stats{Records: len(q.entries), Bytes: q.live, Dropped: q.dropped, Syncs: q.fsyncCount}
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
	if err := atomicfile.SyncDir(dir); err != nil {
		return fmt.Errorf("diskqueue: sync dir %s: %w", dir, err)
	}
	return nil
}
