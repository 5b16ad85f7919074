// Package gotest holds the Go tests of stardetr's CARAFE plugin (model/carafe, written in C):
// they load build/<goarch>/libstardetr_carafe.so into ONNX Runtime through onnxruntime_go, the
// way the model package does, and check graphs with an mmcv::MMCVCARAFE node against numpy.
// The tests live here because Go refuses a package directory holding the plugin's C sources.
package gotest
