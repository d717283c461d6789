//! `read_pt_inert`: Hugging Face's `training_args.bin`, a pickled `TrainingArguments`
//! dataclass that the safe loader refuses, read as inert records for inspection.
//!
//! `testdata/foreign/checkpoint-40/training_args.bin` was written by transformers 5.25
//! as its Trainer writes it, `torch.save(TrainingArguments(...))`
//! (`testdata/foreign/make_torch_fixtures.py`): protocol 2, NEWOBJ of the class and
//! BUILD with its attribute dict, enum members (`SchedulerType`, `OptimizerNames`,
//! ...) as calls of their class with their value, and nested records
//! (`accelerate.state.PartialState`, `torch.device("cpu")`).

use std::path::PathBuf;

use tempo_ckpt::{read_pt, read_pt_inert, write_pt_bytes, write_tempo_bytes, CkptError, Object};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/foreign/checkpoint-40/training_args.bin")
}

#[test]
fn training_args_are_read_as_inert_records_and_refused_by_the_loader() {
    let o = read_pt_inert(fixture()).unwrap();
    let Object::Record {
        class,
        args,
        state: Some(state),
    } = &o
    else {
        panic!("{o:?}")
    };
    assert_eq!(class, "transformers.training_args.TrainingArguments");
    assert!(args.is_empty());
    assert_eq!(
        state.get("lr_scheduler_type"),
        Some(&Object::Record {
            class: "transformers.trainer_utils.SchedulerType".into(),
            args: vec![Object::Str("cosine".into())],
            state: None,
        })
    );
    assert_eq!(state.get("learning_rate"), Some(&Object::Float(3e-4)));
    assert_eq!(state.get("warmup_steps"), Some(&Object::Int(8)));
    assert_eq!(state.get("max_steps"), Some(&Object::Int(100)));
    assert_eq!(state.get("num_train_epochs"), Some(&Object::Int(2)));
    // torch.device("cpu"), deep inside, is a record too: nothing was constructed.
    let device = state
        .get("distributed_state")
        .and_then(|d| match d {
            Object::Record { state: Some(s), .. } => s.get("device"),
            _ => None,
        })
        .unwrap();
    assert!(matches!(device, Object::Record { class, .. } if class == "torch.device"));
    // The loader proper refuses the file, naming the class; no writer takes a record.
    assert!(matches!(
        read_pt(fixture()),
        Err(CkptError::ForbiddenGlobal { ref name, .. }) if name == "TrainingArguments"
    ));
    assert!(matches!(
        write_pt_bytes("a", &o),
        Err(CkptError::Unsupported { .. })
    ));
    assert!(matches!(
        write_tempo_bytes(&o),
        Err(CkptError::Unsupported { .. })
    ));
    // Plain files read the same in both modes.
    let legacy = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/foreign/legacy.pt");
    assert_eq!(
        read_pt_inert(&legacy)
            .unwrap()
            .first_difference(&read_pt(&legacy).unwrap()),
        None
    );
    let quantized =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/foreign/quantized.pt");
    assert_eq!(
        read_pt_inert(&quantized)
            .unwrap()
            .first_difference(&read_pt(&quantized).unwrap()),
        None
    );
}
