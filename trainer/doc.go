// Package trainer is the training loop: one trial of fine-tuning or
// distillation, from a prepared dataset and a starting model folder to an
// exported best and final model, with checkpoints it resumes from bit for
// bit after a crash.
//
// Train reads top to bottom as the loop it runs: start the trial (load the
// splits, build the model, optimizer and schedule), resume, run epochs of
// optimizer steps (each GradAccum micro-batches of forward and backward),
// log, evaluate, checkpoint, and finish (export and write the log). The
// state a checkpoint restores is trainState; randomness is a function of
// (seed, epoch, micro-step), so a resumed run replays the same batches and
// dropout masks. Evaluate and EvaluateHidden score rows without autograd;
// TeacherShard caches a teacher's logits and [CLS] vectors in distillation
// shards; hidden.go is the hidden-state distillation loss; importance.go
// scores heads and FFN neurons for structured pruning (RowsImportance, summed
// across shards with Importance.Merge) and plans each pruning round
// (PlanPrune); peft.go resolves a run's fine-tuning method (Config.Tuning),
// loads model folders that may be LoRA adapters (FetchModel, LoadModel: the
// adapter and its base, local or gs://) and merges adapters (MergeAdapter).
// A LoRA trial exports adapter folders and checkpoints only its trainable
// set; frozen weights are rebuilt from Init on resume.
//
// The trainer knows nothing of Beam: a Progress receives its steps and log
// entries, and transforms.TrainFn turns them into Beam metrics. Torch work
// runs on the calling goroutine's locked OS thread.
//
// Imports: dataset, report (the training-log entry), model, storage.
package trainer
