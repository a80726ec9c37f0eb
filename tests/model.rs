//! Model specs, their validation, the flat parameter layout and initialisation.

use wgtrain::Error;
use wgtrain::backend::cpu::CpuBackend;
use wgtrain::model::{
    Activation, Layer, LossKind, Model, ModelSpec, ParamLayout, Task, init_params,
};
use wgtrain::rng::Rng;

/// Parameter views start at multiples of 64 elements (256 bytes, the largest storage-buffer
/// offset alignment a GPU adapter asks for).
const PARAM_ALIGN: usize = 64;

fn mlp(hidden: &[usize], act: Activation, dropout: f32) -> wgtrain::Result<ModelSpec> {
    ModelSpec::mlp(4, hidden, 3, act, dropout, LossKind::SoftmaxCrossEntropy)
}

/// An MSE model of exactly these layers (built through `mlp` so that fields added to
/// `ModelSpec` later keep their defaults).
fn spec_of(layers: Vec<Layer>) -> ModelSpec {
    let mut spec = ModelSpec::mlp(4, &[], 3, Activation::Linear, 0.0, LossKind::Mse).unwrap();
    spec.layers = layers;
    spec
}

fn dense(inputs: usize, outputs: usize) -> Layer {
    Layer::Dense { inputs, outputs }
}

const TANH: Layer = Layer::Activation {
    activation: Activation::Tanh,
};

// ---------------------------------------------------------------------------------------------
// ModelSpec::mlp and validate.

#[test]
fn mlp_builds_dense_activation_dropout_sequence() {
    let spec = mlp(&[8, 5], Activation::Relu, 0.25).unwrap();
    let relu = Layer::Activation {
        activation: Activation::Relu,
    };
    let drop = Layer::Dropout { p: 0.25 };
    assert_eq!(
        spec.layers,
        vec![
            dense(4, 8),
            relu,
            drop,
            dense(8, 5),
            relu,
            drop,
            dense(5, 3)
        ]
    );
    assert_eq!(spec.task(), Task::Classification);
    assert_eq!((spec.inputs(), spec.outputs()), (4, 3));
    assert_eq!(
        spec.parameter_count(),
        (4 * 8 + 8) + (8 * 5 + 5) + (5 * 3 + 3)
    );
    spec.validate().unwrap();

    // No dropout layers at p = 0; no hidden layers is a single Dense layer.
    let spec = mlp(&[8], Activation::Tanh, 0.0).unwrap();
    assert_eq!(spec.layers, vec![dense(4, 8), TANH, dense(8, 3)]);
    let spec = ModelSpec::mlp(4, &[], 2, Activation::Relu, 0.0, LossKind::Mse).unwrap();
    assert_eq!(spec.layers, vec![dense(4, 2)]);
    assert_eq!(spec.task(), Task::Regression);
}

#[test]
fn mlp_rejects_a_zero_hidden_size() {
    let err = mlp(&[8, 0, 5], Activation::Relu, 0.0).unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(err.to_string().contains("hidden layer 2"), "{err}");
}

#[test]
fn mlp_rejects_zero_inputs_or_outputs() {
    for (i, o) in [(0, 3), (4, 0)] {
        let err = ModelSpec::mlp(i, &[8], o, Activation::Relu, 0.0, LossKind::Mse).unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err:?}");
    }
}

#[test]
fn mlp_rejects_dropout_outside_0_1() {
    for p in [1.0, 1.5, -0.1, f32::NAN, f32::INFINITY] {
        let err = mlp(&[8], Activation::Relu, p).unwrap_err();
        assert!(matches!(err, Error::Config(_)), "p = {p}: {err:?}");
        assert!(err.to_string().contains("--dropout"), "{err}");
    }
    // The ends of the range: 0 means none, anything below 1 is allowed.
    mlp(&[8], Activation::Relu, 0.0).unwrap();
    mlp(&[8], Activation::Relu, 0.99).unwrap();
}

#[test]
fn validate_rejects_malformed_sequences() {
    let bad: Vec<(&str, Vec<Layer>)> = vec![
        ("empty", vec![]),
        ("no dense layer", vec![TANH, Layer::Dropout { p: 0.1 }]),
        ("sizes do not chain", vec![dense(4, 5), TANH, dense(6, 3)]),
        ("zero-size layer", vec![dense(4, 0), TANH, dense(0, 3)]),
        (
            "dropout p = 1",
            vec![dense(4, 5), Layer::Dropout { p: 1.0 }, dense(5, 3)],
        ),
        (
            "negative dropout",
            vec![dense(4, 5), Layer::Dropout { p: -0.5 }, dense(5, 3)],
        ),
        (
            "NaN dropout",
            vec![dense(4, 5), Layer::Dropout { p: f32::NAN }, dense(5, 3)],
        ),
    ];
    for (what, layers) in bad {
        let err = spec_of(layers).validate().unwrap_err();
        assert!(matches!(err, Error::Shape(_)), "{what}: {err:?}");
    }
    // Activations and dropout anywhere: stacked, before the first Dense layer, after the last.
    for layers in [
        vec![dense(4, 5), TANH, Layer::Dropout { p: 0.5 }, dense(5, 3)],
        vec![TANH, dense(4, 3)],
        vec![Layer::Dropout { p: 0.1 }, dense(4, 3)],
        vec![dense(4, 3), TANH],
        vec![
            dense(4, 5),
            TANH,
            TANH,
            dense(5, 3),
            Layer::Dropout { p: 0.2 },
        ],
    ] {
        spec_of(layers.clone())
            .validate()
            .unwrap_or_else(|e| panic!("{layers:?}: {e}"));
    }
    // Cross-entropy over one output would always be 0.
    let mut one = spec_of(vec![dense(4, 1)]);
    one.loss = LossKind::SoftmaxCrossEntropy;
    assert!(matches!(one.validate(), Err(Error::Config(_))));
}

#[test]
fn model_new_rejects_bad_parameters_and_specs() {
    let spec = mlp(&[8], Activation::Relu, 0.0).unwrap();
    let layout = ParamLayout::new(&spec);
    let params = vec![0.0; layout.total];
    let cpu = || Box::new(CpuBackend::new());
    // A parameter vector of the wrong length, an invalid spec, a batch of 0 rows.
    assert!(matches!(
        Model::with_params(cpu(), spec.clone(), &params[1..]),
        Err(Error::Shape(_))
    ));
    let broken = spec_of(vec![dense(4, 5), dense(6, 3)]);
    let p = vec![0.0; ParamLayout::new(&broken).total];
    assert!(matches!(
        Model::with_params(cpu(), broken, &p),
        Err(Error::Shape(_))
    ));
    let mut m = Model::with_params(cpu(), spec, &params).unwrap();
    assert!(matches!(m.set_batch_size(0), Err(Error::Config(_))));
}

// ---------------------------------------------------------------------------------------------
// ParamLayout.

#[test]
fn param_layout_is_aligned_and_disjoint() {
    let specs = [
        ModelSpec::mlp(784, &[256, 128], 10, Activation::Relu, 0.2, LossKind::Mse).unwrap(),
        ModelSpec::mlp(5, &[7, 6], 4, Activation::Tanh, 0.0, LossKind::Mse).unwrap(),
        ModelSpec::mlp(3, &[1], 1, Activation::Tanh, 0.0, LossKind::Mse).unwrap(),
        // Sizes that are exact multiples of the alignment: no padding needed.
        ModelSpec::mlp(64, &[64], 64, Activation::Relu, 0.0, LossKind::Mse).unwrap(),
        ModelSpec::mlp(2, &[], 1, Activation::Relu, 0.0, LossKind::Mse).unwrap(),
    ];
    for spec in &specs {
        let layout = ParamLayout::new(spec);
        let dense: Vec<(usize, usize, usize)> = spec
            .layers
            .iter()
            .enumerate()
            .filter_map(|(i, l)| match *l {
                Layer::Dense { inputs, outputs } => Some((i, inputs, outputs)),
                _ => None,
            })
            .collect();
        assert_eq!(layout.slots.len(), dense.len());
        // Every weight matrix, then every bias: in order, each [start, end), the views must not
        // overlap and must fit; the biases start at `bias_start`.
        let mut views = Vec::new();
        for (s, &(layer, inputs, outputs)) in layout.slots.iter().zip(&dense) {
            assert_eq!((s.layer, s.inputs, s.outputs), (layer, inputs, outputs));
            assert_eq!(s.weight_offset % PARAM_ALIGN, 0, "{s:?}");
            assert_eq!(s.bias_offset % PARAM_ALIGN, 0, "{s:?}");
            views.push((s.weight_offset, s.weight_offset + inputs * outputs));
        }
        for s in &layout.slots {
            views.push((s.bias_offset, s.bias_offset + s.outputs));
        }
        assert_eq!(views[0].0, 0);
        assert_eq!(layout.slots[0].bias_offset, layout.bias_start);
        let last_weight = layout.slots.last().unwrap();
        assert!(
            last_weight.weight_offset + last_weight.inputs * last_weight.outputs
                <= layout.bias_start
        );
        for pair in views.windows(2) {
            assert!(pair[0].1 <= pair[1].0, "overlap: {views:?}");
            // Padding is less than one alignment unit.
            assert!(pair[1].0 - pair[0].1 < PARAM_ALIGN, "{views:?}");
        }
        let end = views.last().unwrap().1;
        assert!(end <= layout.total && layout.total - end < PARAM_ALIGN);
        assert_eq!(layout.total % PARAM_ALIGN, 0);
        assert!(layout.total >= spec.parameter_count());
    }
    // 64·64 weights twice, then 64 biases twice: no padding at all.
    let exact = ParamLayout::new(&specs[3]);
    assert_eq!(exact.total, specs[3].parameter_count());
}

// ---------------------------------------------------------------------------------------------
// Initialisation.

fn mean_std(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

#[test]
fn he_init_for_relu_layers() {
    for act in [Activation::Relu, Activation::LeakyRelu] {
        let spec =
            ModelSpec::mlp(200, &[256], 10, act, 0.0, LossKind::SoftmaxCrossEntropy).unwrap();
        let layout = ParamLayout::new(&spec);
        let p = init_params(&spec, &layout, &mut Rng::new(1));
        let s = &layout.slots[0];
        let w = &p[s.weight_offset..s.weight_offset + 200 * 256];
        let (mean, std) = mean_std(w);
        let want = (2.0f64 / 200.0).sqrt();
        // 51200 samples: the standard error of the std is 0.3%, of the mean 0.0004.
        assert!(
            (std / want - 1.0).abs() < 0.02,
            "{act:?}: std {std} vs {want}"
        );
        assert!(mean.abs() < 0.002, "{act:?}: mean {mean}");
        // Normal, not uniform: some weights lie beyond 3 standard deviations.
        assert!(w.iter().any(|&x| (x as f64).abs() > 3.0 * want));
    }
}

#[test]
fn xavier_init_for_other_layers() {
    let spec = ModelSpec::mlp(
        200,
        &[256],
        10,
        Activation::Tanh,
        0.0,
        LossKind::SoftmaxCrossEntropy,
    )
    .unwrap();
    let layout = ParamLayout::new(&spec);
    let p = init_params(&spec, &layout, &mut Rng::new(2));
    // The tanh hidden layer and the softmax output layer are both Xavier-uniform.
    for s in &layout.slots {
        let w = &p[s.weight_offset..s.weight_offset + s.inputs * s.outputs];
        let limit = (6.0 / (s.inputs + s.outputs) as f64).sqrt();
        let max = w.iter().map(|&x| (x as f64).abs()).fold(0.0, f64::max);
        assert!(max <= limit, "layer {}: |w| {max} > {limit}", s.layer);
        assert!(max > 0.98 * limit, "layer {}: max |w| {max}", s.layer);
        // Uniform on [-l, l] has variance l²/3 (2560 samples for the output layer: the standard
        // error of the std is 1%).
        let (mean, std) = mean_std(w);
        let want = limit / 3f64.sqrt();
        assert!((std / want - 1.0).abs() < 0.04, "std {std} vs {want}");
        assert!(mean.abs() < 0.05 * limit, "mean {mean}");
    }

    // The output layer after ReLU hidden layers is still Xavier (a linear output follows it).
    let spec = ModelSpec::mlp(200, &[256], 10, Activation::Relu, 0.0, LossKind::Mse).unwrap();
    let layout = ParamLayout::new(&spec);
    let p = init_params(&spec, &layout, &mut Rng::new(3));
    let s = &layout.slots[1];
    let limit = (6.0 / 266.0f64).sqrt();
    let w = &p[s.weight_offset..s.weight_offset + 2560];
    assert!(w.iter().all(|&x| (x as f64).abs() <= limit));
}

#[test]
fn init_zeroes_biases_and_padding_and_is_seeded() {
    let spec = ModelSpec::mlp(5, &[7, 6], 4, Activation::Relu, 0.0, LossKind::Mse).unwrap();
    let layout = ParamLayout::new(&spec);
    let p = init_params(&spec, &layout, &mut Rng::new(4));
    assert_eq!(p.len(), layout.total);
    let mut is_weight = vec![false; layout.total];
    for s in &layout.slots {
        is_weight[s.weight_offset..s.weight_offset + s.inputs * s.outputs].fill(true);
    }
    for (i, &v) in p.iter().enumerate() {
        if is_weight[i] {
            assert_ne!(v, 0.0, "weight {i}");
        } else {
            assert_eq!(v, 0.0, "bias or padding {i}");
        }
    }
    assert_eq!(p, init_params(&spec, &layout, &mut Rng::new(4)));
    assert_ne!(p, init_params(&spec, &layout, &mut Rng::new(5)));
}
