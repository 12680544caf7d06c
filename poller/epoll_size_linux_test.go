package poller

import (
	"reflect"
	"testing"
	"unsafe"
)

// TestEpollStateSize pins the per-connection cost stated in
// epoll_slab_linux.go, and that the slot and the handle hold no pointers
// (so the GC does not scan them).
func TestEpollStateSize(t *testing.T) {
	if s := unsafe.Sizeof(slot{}); s != 40 {
		t.Errorf("slot is %d bytes, documented 40", s)
	}
	if s := unsafe.Sizeof(refs{}); s != 24 {
		t.Errorf("refs is %d bytes, documented 24", s)
	}
	if s := unsafe.Sizeof(econn(0)); s != 8 {
		t.Errorf("econn is %d bytes, documented 8", s)
	}
	for _, v := range []any{slot{}, econn(0)} {
		if p := pointerPath(reflect.TypeOf(v), ""); p != "" {
			t.Errorf("%T holds a pointer at %s", v, p)
		}
	}
}

// pointerPath returns the path of the first pointer-holding field of t, or "".
func pointerPath(t reflect.Type, path string) string {
	switch t.Kind() {
	case reflect.Pointer, reflect.UnsafePointer, reflect.Map, reflect.Chan, reflect.Func,
		reflect.Interface, reflect.Slice, reflect.String:
		return path + " (" + t.String() + ")"
	case reflect.Array:
		if t.Len() > 0 {
			return pointerPath(t.Elem(), path+"[]")
		}
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			if p := pointerPath(t.Field(i).Type, path+"."+t.Field(i).Name); p != "" {
				return p
			}
		}
	}
	return ""
}
