package flowlog

// realPacketsForTest are first packets of flows captured by NFLOG in
// TestReader (see capturePackets), kept as fuzz seeds.
var realPacketsForTest = [][]byte{}
