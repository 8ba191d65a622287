package media

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// WAV format tags this package reads.
const (
	wavPCM        = 1
	wavALaw       = 6
	wavULaw       = 7
	wavExtensible = 0xfffe
)

// wavInfo is what the fmt chunk says.
type wavInfo struct {
	format   uint16
	channels uint16
	rate     uint32
	bits     uint16
}

func (w wavInfo) String() string {
	ch := fmt.Sprintf("%d channels", w.channels)
	switch w.channels {
	case 1:
		ch = "mono"
	case 2:
		ch = "stereo"
	}
	var enc string
	switch w.format {
	case wavPCM:
		enc = fmt.Sprintf("%d-bit PCM", w.bits)
	case wavALaw:
		enc = "A-law"
	case wavULaw:
		enc = "µ-law"
	default:
		enc = fmt.Sprintf("format %d", w.format)
	}
	return fmt.Sprintf("%d Hz %s %s", w.rate, ch, enc)
}

// maxMusicBytes bounds a music file's audio (about 35 minutes of G.711 or
// 17 of PCM) so a wrong path cannot make every ringing call load a huge file.
const maxMusicBytes = 16 << 20

// readWAV reads a RIFF/WAVE stream and returns its format and the data
// chunk. Chunks it does not need (LIST, fact, cue ...) are skipped.
func readWAV(r io.Reader) (wavInfo, []byte, error) {
	var info wavInfo
	var hdr [12]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return info, nil, fmt.Errorf("not a WAV file: %w", noEOF(err))
	}
	if string(hdr[0:4]) != "RIFF" || string(hdr[8:12]) != "WAVE" {
		return info, nil, errors.New("not a WAV file (no RIFF/WAVE header)")
	}
	haveFmt := false
	for {
		var ch [8]byte
		if _, err := io.ReadFull(r, ch[:]); err != nil {
			if !haveFmt {
				return info, nil, errors.New("WAV file has no fmt chunk")
			}
			return info, nil, errors.New("WAV file has no data chunk")
		}
		id := string(ch[0:4])
		size := int64(binary.LittleEndian.Uint32(ch[4:8]))
		switch id {
		case "fmt ":
			if size < 16 || size > 1024 {
				return info, nil, fmt.Errorf("WAV fmt chunk of %d bytes", size)
			}
			b := make([]byte, size+size&1)
			if _, err := io.ReadFull(r, b); err != nil {
				return info, nil, fmt.Errorf("WAV fmt chunk: %w", noEOF(err))
			}
			info.format = binary.LittleEndian.Uint16(b[0:2])
			info.channels = binary.LittleEndian.Uint16(b[2:4])
			info.rate = binary.LittleEndian.Uint32(b[4:8])
			info.bits = binary.LittleEndian.Uint16(b[14:16])
			if info.format == wavExtensible && size >= 26 {
				// The sub-format GUID starts with the classic format tag.
				info.format = binary.LittleEndian.Uint16(b[24:26])
			}
			haveFmt = true
		case "data":
			if !haveFmt {
				return info, nil, errors.New("WAV data chunk before fmt chunk")
			}
			if size > maxMusicBytes {
				return info, nil, fmt.Errorf("WAV data of %d bytes; at most %d", size, maxMusicBytes)
			}
			b := make([]byte, size)
			n, err := io.ReadFull(r, b)
			if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
				return info, nil, fmt.Errorf("WAV data chunk: %w", noEOF(err))
			}
			// A truncated data chunk (a recorder killed before it fixed
			// the header) still holds usable audio.
			return info, b[:n], nil
		default:
			if _, err := io.CopyN(io.Discard, r, size+size&1); err != nil {
				return info, nil, fmt.Errorf("WAV %q chunk: %w", id, noEOF(err))
			}
		}
	}
}

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// wavHeaderSize is the header writeWAVHeader writes: RIFF, fmt (16 bytes of
// PCM format), data chunk header.
const wavHeaderSize = 44

// wavHeader returns a canonical 44-byte PCM header for dataBytes of audio.
func wavHeader(channels, rate, bits int, dataBytes uint32) [wavHeaderSize]byte {
	var h [wavHeaderSize]byte
	copy(h[0:4], "RIFF")
	binary.LittleEndian.PutUint32(h[4:8], 36+dataBytes)
	copy(h[8:12], "WAVE")
	copy(h[12:16], "fmt ")
	binary.LittleEndian.PutUint32(h[16:20], 16)
	binary.LittleEndian.PutUint16(h[20:22], wavPCM)
	binary.LittleEndian.PutUint16(h[22:24], uint16(channels))
	binary.LittleEndian.PutUint32(h[24:28], uint32(rate))
	blockAlign := channels * bits / 8
	binary.LittleEndian.PutUint32(h[28:32], uint32(rate*blockAlign))
	binary.LittleEndian.PutUint16(h[32:34], uint16(blockAlign))
	binary.LittleEndian.PutUint16(h[34:36], uint16(bits))
	copy(h[36:40], "data")
	binary.LittleEndian.PutUint32(h[40:44], dataBytes)
	return h
}
