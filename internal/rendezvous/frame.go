package rendezvous

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Frames carry the client's side to the agent: a kind byte, a 4-byte
// big-endian length and the payload.
const (
	frameData   = 'd' // bytes the client typed: the dyno's stdin
	frameEOF    = 'e' // the client's stdin ended (no TTY)
	frameResize = 'r' // cols and rows, 2 bytes each
	frameSignal = 's' // a signal name: INT, TERM, QUIT, HUP
)

// maxFrame bounds a frame's payload.
const maxFrame = 1 << 20

func writeFrame(w io.Writer, kind byte, payload []byte) error {
	hdr := [5]byte{kind}
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	// One write, so a frame is never split by another writer's.
	buf := append(hdr[:], payload...)
	_, err := w.Write(buf)
	return err
}

func readFrame(r io.Reader, buf []byte) (kind byte, payload []byte, err error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("rendezvous: frame of %d bytes is too large", n)
	}
	if int(n) > cap(buf) {
		buf = make([]byte, n)
	}
	payload = buf[:n]
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, err
	}
	return hdr[0], payload, nil
}

func resizePayload(ws WindowSize) []byte {
	var b [4]byte
	binary.BigEndian.PutUint16(b[0:], ws.Cols)
	binary.BigEndian.PutUint16(b[2:], ws.Rows)
	return b[:]
}
