//go:build !linux

package proc

import "io/fs"

func readProc(pid int, name string, buf []byte) ([]byte, error) { return nil, fs.ErrNotExist }

func readExe(pid int) string { return "" }
