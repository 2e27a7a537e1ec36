package dataset

// Split names.
const (
	SplitTrain      = "train"
	SplitValidation = "validation"
	SplitTest       = "test"
)
