package sip

import (
	"testing"
	"unsafe"
)

// What a ringing call holds of its own fits the allocator's size classes
// the README's memory figures were measured with. A field that takes one
// past its class costs every ringing call the step to the next class (64
// bytes for each leg's uac), so it should be a decision, not an accident.
func TestRingingCallStructsFitTheirSizeClass(t *testing.T) {
	for _, c := range []struct {
		name        string
		size, class uintptr
	}{
		{"uac", unsafe.Sizeof(uac{}), 448},
		{"call", unsafe.Sizeof(call{}), 416},
		{"uas", unsafe.Sizeof(uas{}), 256},
	} {
		if c.size > c.class {
			t.Errorf("%s is %d bytes, past its %d-byte size class", c.name, c.size, c.class)
		}
	}
}
