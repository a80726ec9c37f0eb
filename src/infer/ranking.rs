//! From a model's outputs to classes: the predicted class of a row and its top-k list.

use crate::model::{LossKind, ModelSpec};

/// The class the loss op counts as predicted, from one row of logits: the first maximum (as
/// the backends' `argmax` breaks ties), or for a single sigmoid output, class 1 when the
/// logit is positive.
pub fn predicted_class(loss: LossKind, logits: &[f32]) -> usize {
    if loss == LossKind::SigmoidBce && logits.len() == 1 {
        return usize::from(logits[0] > 0.0);
    }
    let mut best = 0;
    for (j, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = j;
        }
    }
    best
}

/// One probability per class from one row of [`crate::model::Model::predict`] output. A
/// single sigmoid output `p` is the probability of class 1, so the classes are `[1 - p, p]`.
pub fn class_probabilities(spec: &ModelSpec, outputs: &[f32]) -> Vec<f32> {
    if spec.loss == LossKind::SigmoidBce && outputs.len() == 1 {
        vec![1.0 - outputs[0], outputs[0]]
    } else {
        outputs.to_vec()
    }
}

/// The `k` most probable classes, most probable first, as `(class, probability)`. Equal
/// probabilities keep the lower class first, as the first maximum wins in `argmax`.
pub fn top_k(probabilities: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut ranked: Vec<(usize, f32)> = probabilities.iter().copied().enumerate().collect();
    // Stable, and NaN-tolerant (a NaN sorts last rather than panicking).
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if let Some(first_real) = ranked.iter().position(|p| !p.1.is_nan()) {
        ranked.rotate_left(first_real);
    }
    ranked.truncate(k);
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_take_the_first_maximum() {
        assert_eq!(
            predicted_class(LossKind::SoftmaxCrossEntropy, &[0.1, 0.5, 0.5]),
            1
        );
        assert_eq!(
            predicted_class(LossKind::SoftmaxCrossEntropy, &[2.0, 2.0]),
            0
        );
        assert_eq!(
            top_k(&[0.2, 0.4, 0.4], 3),
            vec![(1, 0.4), (2, 0.4), (0, 0.2)]
        );
    }

    #[test]
    fn single_sigmoid_output_is_two_classes() {
        assert_eq!(predicted_class(LossKind::SigmoidBce, &[0.0]), 0);
        assert_eq!(predicted_class(LossKind::SigmoidBce, &[1e-9]), 1);
        assert_eq!(predicted_class(LossKind::SigmoidBce, &[-3.0]), 0);
    }

    #[test]
    fn top_k_truncates_and_orders() {
        let p = [0.1, 0.6, 0.05, 0.25];
        assert_eq!(top_k(&p, 2), vec![(1, 0.6), (3, 0.25)]);
        assert_eq!(top_k(&p, 10).len(), 4);
        assert_eq!(top_k(&[f32::NAN, 0.3], 2)[0], (1, 0.3));
    }
}
