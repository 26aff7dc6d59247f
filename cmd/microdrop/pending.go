package main

import (
	"context"
	"errors"
	"io"
)

// Commands whose packages are still being built say so plainly.

func runExport(context.Context, []string, io.Writer, io.Writer) error {
	return errors.New("export is not built into this version yet")
}
