package model

import (
	"errors"
	"fmt"

	ort "github.com/yalue/onnxruntime_go"
	"gocv.io/x/gocv"
)

// Batch runs up to Size frames in one ONNX Runtime call, for a model whose batch axis is
// dynamic: several cameras' frames cost one Run, which keeps more of the CPU's vector units
// and threads busy than one small Run each. Frame i is preprocessed and decoded through
// Item(i), an Input without tensors of its own; Run(k) runs items 0..k-1.
//
// Memory: one input buffer [Size,3,H,W] and one output buffer [Size,queries,4+nc]; for each
// k = 1..Size a tensor pair over the first k frames of those buffers and a binding, so that
// Run(k) computes exactly k frames and nothing is allocated per call. Ownership as for Input:
// the Batch owns its tensors, bindings and items; the Detector closes Batches still open.
type Batch struct {
	d        *Detector
	items    []*Input
	inputs   []*ort.Tensor[float32] // [k-1]: the first k frames
	outputs  []*ort.Tensor[float32]
	bindings []*ort.IoBinding
	closed   bool
}

// NewBatch allocates a batch of size frames (size ≥ 1; above 1 the model needs a dynamic
// batch axis).
func (d *Detector) NewBatch(size int) (b *Batch, err error) {
	if size < 1 {
		return nil, fmt.Errorf("batch size %d: must be at least 1", size)
	}
	if d.info.MaxBatch == 1 && size > 1 {
		return nil, fmt.Errorf("model %s has a fixed batch of 1, so it cannot run %d frames at once: re-export it with a dynamic batch axis (ultralytics: dynamic=True), or set model.batch to 1", d.info.Path, size)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, errors.New("detector is closed")
	}
	b = &Batch{d: d}
	defer func() {
		if err != nil {
			b.close()
			b = nil
		}
	}()
	h, w := d.info.Height, d.info.Width
	perIn, perOut := 3*h*w, d.info.Queries*(4+d.info.NumClasses)
	inBuf, outBuf := make([]float32, size*perIn), make([]float32, size*perOut)
	for i := range size {
		it := d.newItem()
		it.inData, it.outData = inBuf[i*perIn:(i+1)*perIn:(i+1)*perIn], outBuf[i*perOut:(i+1)*perOut:(i+1)*perOut]
		b.items = append(b.items, it)
	}
	for k := 1; k <= size; k++ {
		in, err := ort.NewTensor(ort.NewShape(int64(k), 3, int64(h), int64(w)), inBuf[:k*perIn])
		if err != nil {
			return nil, fmt.Errorf("allocating the input tensor of %d frames: %w", k, err)
		}
		b.inputs = append(b.inputs, in)
		out, err := ort.NewTensor(ort.NewShape(int64(k), int64(d.info.Queries), int64(4+d.info.NumClasses)), outBuf[:k*perOut])
		if err != nil {
			return nil, fmt.Errorf("allocating the output tensor of %d frames: %w", k, err)
		}
		b.outputs = append(b.outputs, out)
		bind, err := d.session.CreateIoBinding()
		if err != nil {
			return nil, fmt.Errorf("binding the tensors: %w", err)
		}
		b.bindings = append(b.bindings, bind)
		if err := bind.BindInput(InputName, in); err != nil {
			return nil, fmt.Errorf("binding input %q: %w", InputName, err)
		}
		if err := bind.BindOutput(OutputName, out); err != nil {
			return nil, fmt.Errorf("binding output %q: %w", OutputName, err)
		}
	}
	d.batches = append(d.batches, b)
	return b, nil
}

// Size is the most frames one Run takes.
func (b *Batch) Size() int { return len(b.items) }

// Item is frame i's Input: its Preprocess fills frame i, its Decode reads frame i's output of
// the last Run. Its own Run returns an error.
func (b *Batch) Item(i int) *Input { return b.items[i] }

// Preprocess fills frame i (Item(i).Preprocess).
func (b *Batch) Preprocess(i int, frame gocv.Mat) error { return b.items[i].Preprocess(frame) }

// Decode reads frame i's detections of the last Run (Item(i).Decode).
func (b *Batch) Decode(i, frameW, frameH int, out []Detection) []Detection {
	return b.items[i].Decode(frameW, frameH, out)
}

// Run runs the model on frames 0..k-1 (1 ≤ k ≤ Size) in one call.
func (b *Batch) Run(k int) error {
	if k < 1 || k > len(b.items) {
		return fmt.Errorf("running the model: %d frames in a batch of %d", k, len(b.items))
	}
	if err := b.d.session.RunWithBinding(b.bindings[k-1]); err != nil {
		return fmt.Errorf("running the model on %d frames: %w", k, err)
	}
	return nil
}

// Close releases the batch's tensors, bindings and items' Mats.
func (b *Batch) Close() error {
	forget(b.d, &b.d.batches, b)
	return b.close()
}

func (b *Batch) close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	var errs []error
	for _, bind := range b.bindings {
		errs = append(errs, bind.Destroy())
	}
	for i := range b.inputs {
		errs = append(errs, b.inputs[i].Destroy())
	}
	for i := range b.outputs {
		errs = append(errs, b.outputs[i].Destroy())
	}
	for _, it := range b.items {
		errs = append(errs, it.close())
	}
	return errors.Join(errs...)
}
