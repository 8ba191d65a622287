// Package wav reads and writes the RIFF/WAVE files ringroute deals with:
// music on hold it plays, and the call recordings it writes. It is a
// stdlib-only leaf so that config can check a music file with the same
// reader media plays it with.
package wav

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// Format tags.
const (
	PCM        = 1
	ALaw       = 6
	ULaw       = 7
	Extensible = 0xfffe
)

// Format is what a file's fmt chunk says.
type Format struct {
	Tag      uint16
	Channels uint16
	Rate     uint32
	Bits     uint16
}

func (f Format) String() string {
	ch := fmt.Sprintf("%d channels", f.Channels)
	switch f.Channels {
	case 1:
		ch = "mono"
	case 2:
		ch = "stereo"
	}
	var enc string
	switch f.Tag {
	case PCM:
		enc = fmt.Sprintf("%d-bit PCM", f.Bits)
	case ALaw:
		enc = "A-law"
	case ULaw:
		enc = "µ-law"
	default:
		enc = fmt.Sprintf("format %d", f.Tag)
	}
	return fmt.Sprintf("%d Hz %s %s", f.Rate, ch, enc)
}

// CheckMusic says whether ringroute can play f as music on hold: 8 kHz
// mono, 16-bit PCM or 8-bit G.711.
func CheckMusic(f Format) error {
	ok := f.Channels == 1 && f.Rate == 8000 &&
		(f.Tag == PCM && f.Bits == 16 || (f.Tag == ULaw || f.Tag == ALaw) && f.Bits == 8)
	if !ok {
		return fmt.Errorf("%s; need 8 kHz mono 16-bit PCM or G.711 (µ-law, A-law)", f)
	}
	return nil
}

// CheckMusicFile opens path and checks its format with CheckMusic, without
// reading its audio.
func CheckMusicFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fm, err := readChunks(bufio.NewReader(f), 0, false)
	if err != nil {
		return err
	}
	return CheckMusic(fm.Format)
}

// MaxData bounds the audio Read loads (about 35 minutes of G.711 or 17 of
// PCM), so a wrong path cannot make every ringing call load a huge file.
const MaxData = 16 << 20

// Read reads a RIFF/WAVE stream and returns its format and the data
// chunk. Chunks it does not need (LIST, fact, cue ...) are skipped. A
// truncated data chunk (a recorder killed before it fixed the header)
// still gives the audio there is.
func Read(r io.Reader) (Format, []byte, error) {
	fm, err := readChunks(r, MaxData, true)
	return fm.Format, fm.data, err
}

type file struct {
	Format
	data []byte
}

func readChunks(r io.Reader, maxData int64, wantData bool) (file, error) {
	var out file
	var hdr [12]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return out, fmt.Errorf("not a WAV file: %w", noEOF(err))
	}
	if string(hdr[0:4]) != "RIFF" || string(hdr[8:12]) != "WAVE" {
		return out, errors.New("not a WAV file (no RIFF/WAVE header)")
	}
	haveFmt := false
	for {
		var ch [8]byte
		if _, err := io.ReadFull(r, ch[:]); err != nil {
			if !haveFmt {
				return out, errors.New("WAV file has no fmt chunk")
			}
			return out, errors.New("WAV file has no data chunk")
		}
		id := string(ch[0:4])
		size := int64(binary.LittleEndian.Uint32(ch[4:8]))
		switch id {
		case "fmt ":
			if size < 16 || size > 1024 {
				return out, fmt.Errorf("WAV fmt chunk of %d bytes", size)
			}
			b := make([]byte, size+size&1)
			if _, err := io.ReadFull(r, b); err != nil {
				return out, fmt.Errorf("WAV fmt chunk: %w", noEOF(err))
			}
			out.Tag = binary.LittleEndian.Uint16(b[0:2])
			out.Channels = binary.LittleEndian.Uint16(b[2:4])
			out.Rate = binary.LittleEndian.Uint32(b[4:8])
			out.Bits = binary.LittleEndian.Uint16(b[14:16])
			if out.Tag == Extensible && size >= 26 {
				// The sub-format GUID starts with the classic format tag.
				out.Tag = binary.LittleEndian.Uint16(b[24:26])
			}
			haveFmt = true
		case "data":
			if !haveFmt {
				return out, errors.New("WAV data chunk before fmt chunk")
			}
			if !wantData {
				return out, nil
			}
			if size > maxData {
				return out, fmt.Errorf("WAV data of %d bytes; at most %d", size, maxData)
			}
			b := make([]byte, size)
			n, err := io.ReadFull(r, b)
			if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
				return out, fmt.Errorf("WAV data chunk: %w", noEOF(err))
			}
			out.data = b[:n]
			return out, nil
		default:
			if _, err := io.CopyN(io.Discard, r, size+size&1); err != nil {
				return out, fmt.Errorf("WAV %q chunk: %w", id, noEOF(err))
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

// HeaderSize is the size of the header Header writes: RIFF, a 16-byte PCM
// fmt chunk, the data chunk header.
const HeaderSize = 44

// Header returns a canonical 44-byte PCM header for dataBytes of audio.
func Header(channels, rate, bits int, dataBytes uint32) [HeaderSize]byte {
	var h [HeaderSize]byte
	copy(h[0:4], "RIFF")
	binary.LittleEndian.PutUint32(h[4:8], 36+dataBytes)
	copy(h[8:12], "WAVE")
	copy(h[12:16], "fmt ")
	binary.LittleEndian.PutUint32(h[16:20], 16)
	binary.LittleEndian.PutUint16(h[20:22], PCM)
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
