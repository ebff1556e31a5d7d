// MIMIX without latent factors (Grantham, Reich, Borer & Gross, arXiv:1703.07747, Sec. 2.3).
//
// Model (paper's notation; the paper writes sigma2 for variances):
//   Y_i ~ Multinomial(m_i, softmax(theta_i))                         [likelihood]
//   theta_ik ~ N(mu_k + beta_k' x_i + sum_q gamma_{k, block[i, q]}, sigma2_k)
//   gamma_{k,r} ~ N(0, sigma2_g[factor of r]),  sigma2_g ~ InvGamma(1, 1)
//   mu_k ~ N(0, sigma2_mu), sigma2_mu ~ InvGamma(1, 1),  sigma2_k ~ InvGamma(1, 1)
//   beta_kj = omega_kj * beta_tilde_kj, beta_tilde_kj ~ N(0, sigma2_b[j]), sigma2_b ~ InvGamma(1, 1)
//   omega_kj ~ Bernoulli(pi_j), pi_j ~ Beta(1, K)
//
// Parametrization (why):
// * omega AND beta_tilde are integrated out exactly, per taxon k, over the 2^P inclusion patterns
//   s: given s, the residual r_k = theta_k - mu_k - block effects is Gaussian with covariance
//   sigma2_k I + X_s diag(sigma2_b[s]) X_s', evaluated with the sufficient statistics X'X and
//   X'r_k (one P x P eigendecomposition per pattern shared by all taxa, never an N x N matrix).
//   The prototype that kept beta_tilde explicit was limited by one taxon with inclusion
//   probability ~0.6 whose chain had to jump between spike and slab (notes/sampler-geometry.md);
//   collapsing removes that mode switch.
//   omega and beta are drawn from their exact conditionals in generated quantities.
// * Blocking effects are hierarchically centred along nested factors: parameter h[r] is the mean
//   of level r (first-factor levels centred on mu, a nested level on its parent's mean), and
//   gamma = h - (parent mean) is a unit-triangular linear map (Jacobian 1), so the prior is
//   stated on gamma exactly as in the paper. Measured in the prototype: 511 -> 255 leapfrog steps.
// * theta stays explicit and centred, except the zero-count cells of rare taxa (prevalence < 0.5),
//   which are partially non-centred on mu + block effects (transformed data: why and measurements).
// * The theta prior and the likelihood are each one whole-matrix expression (include/functions.stan),
//   the same density up to constants as K normal and N multinomial_logit statements (session 5:
//   NutNet-408 14.1 -> 10.6 ms per gradient), and every N x K matrix is one autodiff node under
//   stanc --O1 ("struct of arrays": no cell-wise assignment; mu is taken out of the squares
//   analytically, X'(e - 1 mu') = X'e - (X'1) mu'). bench/gradient.py, NutNet-408, fastest of 25
//   blocks (session 8): 5.58 -> 4.19 ms per gradient (previous program without --O1, as PyStan
//   built it -> this one with --O1; 7.68 ms for the previous program under --O1, as cmdstanpy built it).
// Measured on NutNet-100 (N = 166, K = 101, P = 3, site + block nested; PyStan 3.10, 1 chain,
// 250 warmup + 200 draws, adapt_delta 0.9; bench/geometry-log.md runs 1-2):
//   prototype, beta_tilde explicit, nested means:  255 leapfrog/iteration (depth 8), step 0.016
//   this file (beta_tilde and omega collapsed):    127 leapfrog/iteration (depth 7), step 0.036-0.040,
//   0 divergences; min bulk ESS in 200 draws: global_prob 90-96, sigma2_b 130-200, sigma2_g ~100,
//   beta 10-14 (beta_kj is exactly 0 in most draws of a taxon with inclusion probability ~0.15,
//   so its bulk ESS is low by construction), sigma2 4-17 (taxa with ~40% zero counts and small
//   sigma2_k: a funnel between sigma2_k and the weakly identified theta of zero cells).
// Cost is dominated by the N x K theta layer.
//
// Limit: P <= P_MAX = 6 treatment columns (2^6 = 64 inclusion patterns per taxon).
functions {
#include functions.stan
}
data {
  int<lower=1> N;                         // samples
  int<lower=2> K;                         // taxa (columns of Y)
  int<lower=1> P;                         // treatment columns of X
  int<lower=1> L;                         // latent factors (declare in all three models; nofactor ignores it)
  int<lower=0> Q;                         // blocking factors
  int<lower=0> R;                         // blocking levels, counted across all factors
  array[N, K] int<lower=0> Y;             // counts
  matrix[N, P] X;                         // treatment design, no intercept
  array[N, Q] int<lower=1, upper=R> block;    // level of each blocking factor for each sample
  array[R] int<lower=1, upper=Q> level_factor; // which blocking factor each level belongs to
  array[R] int<lower=0, upper=R> level_parent; // level of the previous factor that contains this level when factors are nested, else 0
  int<lower=1> T;                         // formula terms (a term may span several columns)
  array[T, P] int<lower=0, upper=1> term_cols; // 1 when column j belongs to term t
  int<lower=1> A;                         // size of the grid for a_l (mimix only; declare in all)
  vector<lower=0>[A] a_grid;              // 0.01, 0.02, ..., 0.50
}
transformed data {
#include transformed_data.stan
  // Zero-count cells of rare taxa are sampled partially non-centred (Papaspiliopoulos, Roberts &
  // Skold 2007): where taxon k is seen in fewer than NC_PREVALENCE of the samples, each of its zero
  // cells is theta_ik = M_ik + sigma_k^NC_POWER v_ik, M = mu + block effects, with v_ik the sampler's
  // coordinate (an affine map given the other parameters: same posterior, log Jacobian
  // NC_POWER * log sigma_k per cell); every other cell is centred. Why: such cells are left to the
  // prior below the detection limit, and centred (power 0 and no M) they make a funnel with sigma2_k;
  // fully non-centred (power 1) the treatment signal in them is stretched by 1 / sigma_k, which slows
  // the spike-and-slab beta of the same taxa. NutNet-408, 2 chains x (500 + 1500) each
  // (bench/geometry-log.md S9-3, S10-2), max R-hat / min bulk ESS, centred | power 1 | power 0.5:
  //   beta 1.092 / 27 | 1.124 / 12 | 1.057 / 42;  global prob. 1.055 / 44 | 1.054 / 31 | 1.031 / 42;
  //   sigma2 1.10 / 16 | 1.025 / 175 | 1.027 / 192 (failing sigma2 elements 190 | 9 | 13 of 409);
  //   127-255 leapfrog steps and 0 divergences in all six chains. Power 0.5 is the best or tied on each.
  //   Cost (bench/gradient.py, NutNet-408, session 11): 3.98 ms per gradient against 3.32 ms centred.
  // A zero of a common taxon is informative (it would have been seen), and centring suits it.
  // Only this model: in the factor models the same cells non-centred on mu + F Lambda (session 9,
  // mimix_gaussian, NutNet-408, 2 x (300 + 300)) hit max tree depth 10 on all 600 iterations, and
  // partially non-centred (power 0.5, on mu + F Lambda or on mu; session 11, S11-1/2) mixed beta and the
  // global probabilities worse than centred cells (R-hat 1.38 / 1.15 and 1.29 / 1.18 against 1.26 / 1.04),
  // so they keep theta centred. mimix.density.NC_PREVALENCE and NC_POWER are the same numbers.
  real NC_PREVALENCE = 0.5;
  real NC_POWER = 0.5;
  matrix[N, K] nc = rare_zero_cells(Y, NC_PREVALENCE);  // 1 for a non-centred cell
  vector[K] n_nc = (rep_row_vector(1, N) * nc)';  // non-centred cells per taxon
}
parameters {
  // theta (log-ratio abundances) where centred; (theta - mu - block effects) / sigma^NC_POWER in the
  // non-centred zero cells of rare taxa (nc, see transformed data)
  matrix[N, K] theta_raw;
  vector[K] mu;  // taxon means
  real<lower=0> sigma2_mu;  // variance of mu
  vector<lower=0>[K] sigma2;  // taxon-specific error variance
  matrix[R, K] h;  // hierarchically centred level means (see header)
  vector<lower=0>[Q] sigma2_g;  // variance of the level effects, per blocking factor
  vector<lower=0>[P] sigma2_b;  // slab variance, per treatment column
  vector<lower=0, upper=1>[P] pi;  // prior inclusion probability, per treatment column
}
model {
  matrix[R, K] gamma = level_effects(h, mu', parent_of, first_level);  // paper's gamma (R x K)
  vector[R] sd_level = sqrt(sigma2_g[level_factor]);
  matrix[N, K] block_effects = Z * gamma;
  matrix[N, K] theta = theta_from_raw(theta_raw, nc, block_effects + rep_vector(1, N) * mu',
                                      pow(sigma2, 0.5 * NC_POWER));
  // theta minus its block effects; theta minus all but beta is e - 1 mu', which is never formed
  // (normal_columns_lpdf takes mu out of the squares, X'(e - 1 mu') = X'e - (X'1) mu')
  matrix[N, K] e = theta - block_effects;

  target += 0.5 * NC_POWER * dot_product(n_nc, log(sigma2));  // log Jacobian of the non-centred cells
  sigma2_mu ~ inv_gamma(1, 1);
  mu ~ normal(0, sqrt(sigma2_mu));
  sigma2 ~ inv_gamma(1, 1);
  sigma2_g ~ inv_gamma(1, 1);
  to_vector(gamma) ~ normal(0, to_vector(rep_matrix(sd_level, K)));
  sigma2_b ~ inv_gamma(1, 1);
  pi ~ beta(1, K);
  // theta given everything but beta: N(mu + block effects, sigma2), times the pattern mixture of
  // the collapsed spike-and-slab (beta_tilde and omega integrated out per taxon)
  target += normal_columns_lupdf(e | mu, sigma2);
  {
    matrix[S, K] w = pattern_log_weights(XtX, X' * e - Xt1' * mu', sigma2, sqrt(sigma2_b), pat,
                                         pat_cols, pat_size, log(pi), log1m(pi));
    for (k in 1:K) {
      target += log_sum_exp(w[:, k]);
    }
  }
  // Y_i ~ Multinomial(m_i, softmax(theta_i)), all samples in one call
  target += multinomial_logit_rows(theta, y_nz, nz_idx, depth);
}
generated quantities {
  matrix[K, P] beta = rep_matrix(0, K, P);  // treatment effects, omega .* beta_tilde
  matrix[K, P] incl_prob;  // P(omega_kj = 1 | theta, mu, gamma, sigma2, sigma2_b, pi)
  array[K, P] int omega;  // inclusion indicators, drawn from their exact conditional
  vector[P] global_prob;  // P(any taxon includes column j | rest)
  vector[T] term_prob;  // P(any taxon includes any column of term t | rest)
  {
    matrix[N, K] prior_mean = Z * level_effects(h, mu', parent_of, first_level) + rep_matrix(mu', N);
    matrix[N, K] resid = theta_from_raw(theta_raw, nc, prior_mean, pow(sigma2, 0.5 * NC_POWER)) - prior_mean;
    matrix[P, K] XtR = X' * resid;
    matrix[S, K] w = pattern_log_weights(XtX, XtR, sigma2, sqrt(sigma2_b), pat, pat_cols,
                                         pat_size, log(pi), log1m(pi));
    vector[P] none_col = rep_vector(1, P);  // prod_k P(omega_kj = 0 | rest)
    vector[T] none_term = rep_vector(1, T);  // prod_k P(omega_kj = 0 for all j in t | rest)
    for (k in 1:K) {
      vector[S] p = softmax(w[:, k]);  // pattern probabilities of taxon k
      int s = categorical_rng(p);
      incl_prob[k] = (pat' * p)';
      none_col .*= pat_off * p;
      none_term .*= term_off * p;
      omega[k] = pat_int[s];
      if (pat_size[s] > 0) {
        array[pat_size[s]] int idx = pat_cols[s, 1:pat_size[s]];
        beta[k, idx] = slab_rng(XtX, XtR[:, k], sigma2[k], sqrt(sigma2_b), idx)';
      }
    }
    global_prob = 1 - none_col;
    term_prob = 1 - none_term;
  }
}
