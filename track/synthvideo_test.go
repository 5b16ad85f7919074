package track

import (
	"bufio"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stardetr/stardetr/internal/testenv"
)

// The tracking clip that `python -m model.data.synth --video` writes for users (the training
// work's synthetic data): its MOT ground truth has one row per object and frame, the clip has as
// many frames, some tracks cross, and the tracker, fed the ground-truth boxes with noise and
// misses, follows them with IDF1 ≥ 0.9 per class.
func TestTrackerOnSynthVideo(t *testing.T) {
	const frames, w, h = 120, 640, 360
	dir := t.TempDir()
	cmd := exec.Command(testenv.Python(), "-m", "model.data.synth", "--out", dir, "--video",
		"--frames", strconv.Itoa(frames), "--width", strconv.Itoa(w), "--height", strconv.Itoa(h))
	cmd.Dir = testenv.RepoRoot(t)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+cmd.Dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("python -m model.data.synth --video: %v\n%s", err, out)
	}
	out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=nb_read_frames,width,height", "-of", "csv=p=0", filepath.Join(dir, "clip.mp4")).Output()
	if err != nil {
		t.Fatalf("ffprobe clip.mp4: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != "640,360,120" {
		t.Fatalf("clip.mp4: width,height,frames %q, want 640,360,120", got)
	}
	names, err := os.ReadFile(filepath.Join(dir, "names.txt"))
	if err != nil {
		t.Fatal(err)
	}
	labels := strings.Fields(string(names))

	// gt.txt: frame,id,x,y,w,h,1,class,visibility (MOTChallenge ground truth with a class).
	s := &sequence{w: w, h: h, crossing: map[int]bool{}, frames: make([][]gtBox, frames), dets: make([][]Detection, frames)}
	class := map[int]int{}
	f, err := os.Open(filepath.Join(dir, "gt.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rng := rand.New(rand.NewPCG(7, 11))
	sc := bufio.NewScanner(f)
	rows := 0
	for sc.Scan() {
		v := strings.Split(sc.Text(), ",")
		if len(v) != 9 {
			t.Fatalf("gt.txt line %d: %d fields, want 9: %q", rows+1, len(v), sc.Text())
		}
		var n [9]float64
		for i, x := range v {
			if n[i], err = strconv.ParseFloat(x, 64); err != nil {
				t.Fatalf("gt.txt line %d field %d: %v", rows+1, i+1, err)
			}
		}
		fr, id, cls := int(n[0])-1, int(n[1]), int(n[7])
		if fr < 0 || fr >= frames || cls < 0 || cls >= len(labels) {
			t.Fatalf("gt.txt line %d: frame %d class %d out of range", rows+1, fr+1, cls)
		}
		if c, seen := class[id]; seen && c != cls {
			t.Fatalf("gt.txt: track %d changes class %d -> %d", id, c, cls)
		}
		class[id] = cls
		box := [4]float32{float32(n[2]), float32(n[3]), float32(n[2] + n[4]), float32(n[3] + n[5])}
		s.frames[fr] = append(s.frames[fr], gtBox{id, box})
		if rng.Float64() >= 0.05 { // the "detector" misses 5%
			var b [4]float32
			for k := range b {
				b[k] = box[k] + float32(rng.NormFloat64())
			}
			s.dets[fr] = append(s.dets[fr], Detection{ClassID: cls, Label: labels[cls], Score: 0.6 + 0.3*rng.Float32(), Box: b})
		}
		rows++
	}
	if rows != frames*len(class) {
		t.Fatalf("gt.txt: %d rows for %d tracks over %d frames, want one per track and frame", rows, len(class), frames)
	}
	for _, gt := range s.frames {
		for i := range gt {
			for j := range gt {
				if i != j && iou(gt[i].box, gt[j].box) > 0 {
					s.crossing[gt[i].id] = true
				}
			}
		}
	}
	if len(s.crossing) < 4 {
		t.Fatalf("only %d tracks ever overlap another: the clip does not test crossings", len(s.crossing))
	}

	cfg := DefaultConfig()
	cfg.Enabled = true
	r := evaluate(s.frames, runTracker(s, cfg, labels))
	t.Logf("%d tracks (%d crossing), %d frames: FN %d, FP %d, IDSW %d, MOTA %.3f, IDF1 %.3f", len(class), len(s.crossing), frames, r.fn, r.fp, r.idsw, r.mota, r.idf1)
	if r.idf1 < 0.9 {
		t.Errorf("IDF1 %.3f < 0.9 on the synthetic tracking clip", r.idf1)
	}
}
