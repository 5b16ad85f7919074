// Package onnxpb is a minimal reader of the ONNX ModelProto protobuf: just the fields stardetr needs before it
// creates a session (graph inputs and outputs with their shapes, node op domains, opset
// imports, metadata). Reading them from the file, rather than from a session, lets Open
// decide whether the CARAFE plugin is needed and reject a wrong model before ONNX Runtime
// spends seconds optimising it. Field numbers are those of onnx/onnx.proto.
package onnxpb

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Model is what stardetr reads from an ONNX file.
type Model struct {
	IRVersion int64
	Opsets    map[string]int64 // domain ("" is the default ai.onnx) -> version
	Metadata  map[string]string
	Inputs    []Value // graph inputs that are not initializers
	Outputs   []Value
	Domains   map[string]int // node domain -> node count, top-level graph
	OpTypes   map[string]int // node op_type -> node count, top-level graph
}

// Value is a graph input or output.
type Value struct {
	Name     string
	ElemType int32    // onnx.TensorProto.DataType; 1 = float32
	Dims     []int64  // -1 where the dimension is symbolic or unknown
	DimNames []string // the symbolic names, "" where fixed
	HasShape bool
}

// onnx TensorProto.DataType values that error messages name.
var onnxElemTypes = map[int32]string{1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 11: "float64", 16: "bfloat16"}

func ElemTypeName(t int32) string {
	if n, ok := onnxElemTypes[t]; ok {
		return n
	}
	return fmt.Sprintf("type %d", t)
}

var errTruncated = errors.New("truncated or not a protobuf")

// pbField is one field of a protobuf message.
type pbField struct {
	num  uint64
	wire uint64
	v    uint64 // varint and fixed values
	b    []byte // length-delimited bytes
}

// pbWalk calls fn for each field of the message in buf.
func pbWalk(buf []byte, fn func(f pbField) error) error {
	for len(buf) > 0 {
		key, n := binary.Uvarint(buf)
		if n <= 0 {
			return errTruncated
		}
		buf = buf[n:]
		f := pbField{num: key >> 3, wire: key & 7}
		if f.num == 0 {
			return errTruncated
		}
		switch f.wire {
		case 0:
			f.v, n = binary.Uvarint(buf)
			if n <= 0 {
				return errTruncated
			}
			buf = buf[n:]
		case 1:
			if len(buf) < 8 {
				return errTruncated
			}
			f.v = binary.LittleEndian.Uint64(buf)
			buf = buf[8:]
		case 5:
			if len(buf) < 4 {
				return errTruncated
			}
			f.v = uint64(binary.LittleEndian.Uint32(buf))
			buf = buf[4:]
		case 2:
			l, n := binary.Uvarint(buf)
			if n <= 0 || l > uint64(len(buf)-n) {
				return errTruncated
			}
			f.b = buf[n : n+int(l)]
			buf = buf[n+int(l):]
		default:
			return fmt.Errorf("unsupported protobuf wire type %d: %w", f.wire, errTruncated)
		}
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}

// Parse reads the parts of a ModelProto that stardetr needs.
func Parse(data []byte) (*Model, error) {
	m := &Model{Opsets: map[string]int64{}, Metadata: map[string]string{}, Domains: map[string]int{}, OpTypes: map[string]int{}}
	var graph []byte
	sawGraph := false
	err := pbWalk(data, func(f pbField) error {
		switch {
		case f.num == 1 && f.wire == 0: // ir_version
			m.IRVersion = int64(f.v)
		case f.num == 7 && f.wire == 2: // graph
			graph, sawGraph = f.b, true
		case f.num == 8 && f.wire == 2: // opset_import
			var dom string
			var ver int64
			if err := pbWalk(f.b, func(g pbField) error {
				switch {
				case g.num == 1 && g.wire == 2:
					dom = string(g.b)
				case g.num == 2 && g.wire == 0:
					ver = int64(g.v)
				}
				return nil
			}); err != nil {
				return err
			}
			m.Opsets[dom] = ver
		case f.num == 14 && f.wire == 2: // metadata_props
			var k, v string
			if err := pbWalk(f.b, func(g pbField) error {
				switch {
				case g.num == 1 && g.wire == 2:
					k = string(g.b)
				case g.num == 2 && g.wire == 2:
					v = string(g.b)
				}
				return nil
			}); err != nil {
				return err
			}
			m.Metadata[k] = v
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !sawGraph || m.IRVersion == 0 {
		return nil, fmt.Errorf("no graph or IR version: %w", errTruncated)
	}
	if err := m.parseGraph(graph); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Model) parseGraph(graph []byte) error {
	initializers := map[string]bool{}
	var inputs []Value
	err := pbWalk(graph, func(f pbField) error {
		switch {
		case f.num == 1 && f.wire == 2: // node
			dom, op := "", ""
			if err := pbWalk(f.b, func(g pbField) error {
				switch {
				case g.num == 7 && g.wire == 2:
					dom = string(g.b)
				case g.num == 4 && g.wire == 2:
					op = string(g.b)
				}
				return nil
			}); err != nil {
				return err
			}
			m.Domains[dom]++
			m.OpTypes[op]++
		case f.num == 5 && f.wire == 2: // initializer (TensorProto), name = 8
			return pbWalk(f.b, func(g pbField) error {
				if g.num == 8 && g.wire == 2 {
					initializers[string(g.b)] = true
				}
				return nil
			})
		case (f.num == 11 || f.num == 12) && f.wire == 2: // input, output
			v, err := parseValueInfo(f.b)
			if err != nil {
				return err
			}
			if f.num == 11 {
				inputs = append(inputs, v)
			} else {
				m.Outputs = append(m.Outputs, v)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Old exporters list initializers among the graph inputs: they are weights, not inputs.
	for _, v := range inputs {
		if !initializers[v.Name] {
			m.Inputs = append(m.Inputs, v)
		}
	}
	return nil
}

// parseValueInfo reads a ValueInfoProto: name = 1, type = 2 (TypeProto: tensor_type = 1
// (elem_type = 1, shape = 2 (dim = 1 (dim_value = 1, dim_param = 2)))).
func parseValueInfo(b []byte) (Value, error) {
	var v Value
	err := pbWalk(b, func(f pbField) error {
		switch {
		case f.num == 1 && f.wire == 2:
			v.Name = string(f.b)
		case f.num == 2 && f.wire == 2:
			return pbWalk(f.b, func(t pbField) error {
				if t.num != 1 || t.wire != 2 {
					return nil
				}
				return pbWalk(t.b, func(tt pbField) error {
					switch {
					case tt.num == 1 && tt.wire == 0:
						v.ElemType = int32(tt.v)
					case tt.num == 2 && tt.wire == 2:
						v.HasShape = true
						return pbWalk(tt.b, func(s pbField) error {
							if s.num != 1 || s.wire != 2 {
								return nil
							}
							d, name := int64(-1), ""
							if err := pbWalk(s.b, func(dd pbField) error {
								switch {
								case dd.num == 1 && dd.wire == 0:
									d = int64(dd.v)
								case dd.num == 2 && dd.wire == 2:
									name = string(dd.b)
								}
								return nil
							}); err != nil {
								return err
							}
							if d <= 0 {
								d = -1
							}
							v.Dims = append(v.Dims, d)
							v.DimNames = append(v.DimNames, name)
							return nil
						})
					}
					return nil
				})
			})
		}
		return nil
	})
	return v, err
}
