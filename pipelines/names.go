package pipelines

// Model names: the published folders that train and distill write under
// their output, and the names evaluate and retrain give models in reports.
const (
	TeacherModel  = "teacher"  // train's published model
	StudentModel  = "student"  // distill's published model
	ChampionModel = "champion" // the registry's current model, in an evaluation
)

// Files and folders of a model registry (see docs/retrain.md for the layout).
const (
	leaseFile         = "LEASE"        // held by the run in progress
	runsDir           = "runs"         // one folder per run id
	stagesDir         = "stages"       // in a run: one marker per finished stage
	retrainConfigFile = "retrain.json" // in a run: the resolved configuration
)
