package bikeep

// Exported for the external tests that need the simulator (which imports
// this package).

// DecodeDeviceList is the full decoder, without shortening notes.
func DecodeDeviceList(route string, b []byte) ([]Device, error) {
	return decodeDeviceList(route, b, nil)
}
