package model

import (
	"errors"
	"fmt"
	"image"
	"slices"
	"time"

	ort "github.com/yalue/onnxruntime_go"
	"gocv.io/x/gocv"
)

// Input is one input/output tensor pair bound to the detector's session, with the buffers
// that preprocessing and decoding reuse. One goroutine uses an Input at a time; different
// Inputs of a Detector may be preprocessed and run concurrently (ONNX Runtime's Run is
// thread-safe), so a pipeline can preprocess frame n+1 while frame n runs. Ownership: the
// Input owns its tensors and Mats; the Detector closes Inputs still open when it closes.
type Input struct {
	d       *Detector
	input   *ort.Tensor[float32] // [1,3,H,W], RGB in [0,1]
	output  *ort.Tensor[float32] // [1,queries,4+nc]
	binding *ort.IoBinding
	resized gocv.Mat // the frame stretched to W x H, BGR
	convert gocv.Mat // gray or BGRA frames converted to BGR
	// inData and outData are this frame's part of the tensors' memory: all of it for an Input
	// of its own, one item's [3,H,W] and [queries,4+nc] for an item of a Batch (which has no
	// tensors or binding of its own).
	inData, outData []float32
	cands           []candidate
	closed          bool
}

// NewInput allocates another input/output pair for the session.
func (d *Detector) NewInput() (in *Input, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, errors.New("detector is closed")
	}
	in = d.newItem()
	defer func() {
		if err != nil {
			in.close()
			in = nil
		}
	}()
	h, w := int64(d.info.Height), int64(d.info.Width)
	if in.input, err = ort.NewEmptyTensor[float32](ort.NewShape(1, 3, h, w)); err != nil {
		return nil, fmt.Errorf("allocating the input tensor: %w", err)
	}
	if in.output, err = ort.NewEmptyTensor[float32](ort.NewShape(1, int64(d.info.Queries), int64(4+d.info.NumClasses))); err != nil {
		return nil, fmt.Errorf("allocating the output tensor: %w", err)
	}
	in.inData, in.outData = in.input.GetData(), in.output.GetData()
	if in.binding, err = d.session.CreateIoBinding(); err != nil {
		return nil, fmt.Errorf("binding the tensors: %w", err)
	}
	if err = in.binding.BindInput(InputName, in.input); err != nil {
		return nil, fmt.Errorf("binding input %q: %w", InputName, err)
	}
	if err = in.binding.BindOutput(OutputName, in.output); err != nil {
		return nil, fmt.Errorf("binding output %q: %w", OutputName, err)
	}
	d.inputs = append(d.inputs, in)
	return in, nil
}

// newItem returns an Input without tensors: its Mats and candidate buffer only.
func (d *Detector) newItem() *Input {
	return &Input{d: d, resized: gocv.NewMat(), convert: gocv.NewMat(), cands: make([]candidate, 0, d.info.Queries)}
}

// Tensor is the input tensor's data, [1,3,H,W] float32 RGB in [0,1], valid until Close.
func (in *Input) Tensor() []float32 { return in.inData }

// Output is the last run's output0, [1,queries,4+nc], valid until the next Run or Close.
func (in *Input) Output() []float32 { return in.outData }

// Preprocess stretches a BGR frame (8-bit, 1, 3 or 4 channels, any size) to the model's input
// size with bilinear interpolation and writes it as RGB/255 NCHW into the input tensor, as
// ultralytics' LetterBox(auto=False, scale_fill=True) + ToTensor do. It allocates nothing in
// steady state.
func (in *Input) Preprocess(frame gocv.Mat) error {
	if frame.Empty() {
		return errors.New("preprocess: empty frame")
	}
	src := frame
	switch frame.Type() {
	case gocv.MatTypeCV8UC3:
	case gocv.MatTypeCV8UC1:
		if err := gocv.CvtColor(frame, &in.convert, gocv.ColorGrayToBGR); err != nil {
			return fmt.Errorf("preprocess: gray to BGR: %w", err)
		}
		src = in.convert
	case gocv.MatTypeCV8UC4:
		if err := gocv.CvtColor(frame, &in.convert, gocv.ColorBGRAToBGR); err != nil {
			return fmt.Errorf("preprocess: BGRA to BGR: %w", err)
		}
		src = in.convert
	default:
		return fmt.Errorf("preprocess: frame type %v; expected 8-bit BGR (CV_8UC3), gray or BGRA", frame.Type())
	}
	h, w := in.d.info.Height, in.d.info.Width
	// ultralytics resizes only when the size differs; cv::resize to the same size is a copy.
	if src.Rows() != h || src.Cols() != w || !src.IsContinuous() {
		if err := gocv.Resize(src, &in.resized, image.Pt(w, h), 0, 0, gocv.InterpolationLinear); err != nil {
			return fmt.Errorf("preprocess: resize: %w", err)
		}
		src = in.resized
	}
	pix, err := src.DataPtrUint8()
	if err != nil {
		return fmt.Errorf("preprocess: %w", err)
	}
	n := h * w
	if len(pix) < 3*n {
		return fmt.Errorf("preprocess: resized frame has %d bytes; expected %d", len(pix), 3*n)
	}
	dst := in.inData
	r, g, b := dst[:n], dst[n:2*n], dst[2*n:3*n]
	lut := &in.d.lut
	pix = pix[:3*n]
	for i := range n {
		p := pix[3*i : 3*i+3 : 3*i+3]
		b[i] = lut[p[0]]
		g[i] = lut[p[1]]
		r[i] = lut[p[2]]
	}
	return nil
}

// Run runs the model on the input tensor into the output tensor.
func (in *Input) Run() error {
	if in.binding == nil {
		return errors.New("running the model: this Input is an item of a Batch: run the Batch")
	}
	if err := in.d.session.RunWithBinding(in.binding); err != nil {
		return fmt.Errorf("running the model: %w", err)
	}
	return nil
}

// Detect preprocesses, runs and decodes one frame; out's storage is reused.
func (in *Input) Detect(frame gocv.Mat, out []Detection) ([]Detection, Timings, error) {
	var t Timings
	t0 := time.Now()
	if err := in.Preprocess(frame); err != nil {
		return out[:0], t, err
	}
	t1 := time.Now()
	t.Preprocess = t1.Sub(t0)
	if err := in.Run(); err != nil {
		return out[:0], t, err
	}
	t2 := time.Now()
	t.Run = t2.Sub(t1)
	out = in.Decode(frame.Cols(), frame.Rows(), out)
	t.Decode = time.Since(t2)
	return out, t, nil
}

// Close releases the Input's tensors and Mats.
func (in *Input) Close() error {
	forget(in.d, &in.d.inputs, in)
	return in.close()
}

// forget removes v from one of the detector's lists of open Inputs or Batches (those it
// closes itself when it closes), under its lock.
func forget[T comparable](d *Detector, list *[]T, v T) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if i := slices.Index(*list, v); i >= 0 {
		*list = slices.Delete(*list, i, i+1)
	}
}

func (in *Input) close() error {
	if in.closed {
		return nil
	}
	in.closed = true
	var errs []error
	if in.binding != nil {
		errs = append(errs, in.binding.Destroy())
	}
	if in.input != nil {
		errs = append(errs, in.input.Destroy())
	}
	if in.output != nil {
		errs = append(errs, in.output.Destroy())
	}
	errs = append(errs, in.resized.Close(), in.convert.Close())
	return errors.Join(errs...)
}
