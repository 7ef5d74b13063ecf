package bikeep

// Exported for the external tests that need the simulator (which imports
// this package).
var (
	DecodeDeviceElement = decodeDeviceElement
	RequireObject       = requireObject
)

var DecodeDeviceList = decodeDeviceList
