// MIMIX with Gaussian loadings (Grantham, Reich, Borer & Gross, arXiv:1703.07747, Sec. 2).
//
// Model (paper's notation; the paper writes sigma2 for variances):
//   Y_i ~ Multinomial(m_i, softmax(theta_i))                             [likelihood]
//   theta_ik ~ N(mu_k + (Lambda' f_i)_k, sigma2_k), sigma2_k ~ InvGamma(1, 1)
//   mu_k ~ N(0, sigma2_mu), sigma2_mu ~ InvGamma(1, 1)
//   f_i ~ N_L(b x_i + sum_q g[., block[i, q]], I)
//   g_(l,r) ~ N(0, sigma2_g[factor of r]), sigma2_g ~ InvGamma(1, 1)
//   b = omega .* b_tilde, b_tilde_lj ~ N(0, sigma2_b[j]), sigma2_b ~ InvGamma(1, 1)
//   omega_lj ~ Bernoulli(pi_j), pi_j ~ Beta(1, L)
//   Lambda_lk ~ N(0, sigma2_lambda_l), sigma2_lambda_l ~ InvGamma(1, 1)          [Gaussian loadings]
//   Treatment effect on taxa: beta = Lambda' b (K x P).
//
// Parametrization (why):
// * omega AND b_tilde are integrated out exactly, per factor row l, over the 2^P inclusion
//   patterns s: given s, column l of F - (block effects) is Gaussian with covariance
//   I + X_s diag(sigma2_b[s]) X_s', evaluated with the sufficient statistics X'X and X'(F - G)
//   (one P x P eigendecomposition per pattern, never an N x N matrix). F stays explicit (the exact
//   marginalization needs it; sampled scaled, below). omega and b are drawn from their exact conditionals in
//   generated quantities, so incl_prob is Rao-Blackwellized over b_tilde as well.
// * Blocking effects in the factor layer are hierarchically centred along nested factors
//   (parameter h[r] = mean of level r, a nested level centred on its parent's mean); gamma = h -
//   (parent mean) is unit-triangular (Jacobian 1), so the prior is stated on g exactly as in the
//   paper. In the no-factor prototype this cut leapfrog steps 511 -> 255.
// * Loadings are non-centred: Lambda_l = sqrt(sigma2_lambda_l) z_l, z ~ N(0, 1).
// * theta is sampled as theta_free: each sample's log-ratios to its reference taxon (its most
//   abundant one), with theta_i's level c_i integrated out exactly: the likelihood does not depend
//   on c_i, and integrating N(theta_i + c_i 1 | m_i, diag(sigma2)) over c_i gives a closed form
//   (normal_rows_level_free_lpdf). Same posterior for every other quantity. Why: with theta
//   explicit, beta's common level per treatment (a constant added to every taxon's effect) is
//   set only by the priors and moving it meant moving every theta cell of the treated samples
//   together; on NutNet-100 (Gaussian loadings, L = 10, 2 chains x 500 draws) the nutrient
//   column of beta averaged over taxa sat at -0.012 in one chain and +0.052 in the other.
// * Factor scores and level means are sampled scaled by their loading row's sd: F_scaled =
//   F diag(sd_lambda), h_scaled = h diag(sd_lambda), sd_lambda_l = sqrt(sigma2_lambda_l), log
//   Jacobian -(N + R)/2 sum_l log sigma2_lambda_l. theta's mean F Lambda = F_scaled z_Lambda then
//   does not move with sigma2_lambda, so trading a loading row's scale against its factor's
//   (the slow mode of lambda_diag and eta) is one coordinate instead of N + R + K.
// * The theta prior and the likelihood are each one whole-matrix expression (include/functions.stan)
//   instead of K normal and N multinomial_logit statements (session 5: NutNet-408 14.1 -> 10.6 ms
//   per gradient), and every N x K matrix is one autodiff node under stanc --O1 ("struct of
//   arrays"): theta_free is N x K, its reference cells unused N(0, 1) auxiliaries, so theta =
//   theta_free .* not_ref needs no cell-wise assignment; mu is taken out of the squares
//   analytically. bench/gradient.py, NutNet-408, fastest of 25 blocks (session 8): mimix_gaussian
//   5.09 -> 4.44 ms per gradient, mimix 5.47 -> 4.97 ms (previous program without --O1, as PyStan
//   built it -> this one with --O1); the previous program under --O1 (as cmdstanpy built it) took
//   9.65 and 10.81 ms.
// Measured on NutNet-100 (N = 166, K = 101, P = 3, site + block, L = 10; PyStan 3.10, 2 chains
// side by side, adapt_delta 0.9, max depth 10, SVD inits; bench/geometry-log.md, session 5): the
// trajectories U-turn at 255 leapfrog steps (depth 8, never the limit), 0 divergences. Max R-hat /
// min bulk ESS over both chains after 500 draws each: previous form (centred theta and F) beta
// 1.26 / 6, lambda_diag 1.81 / 3, eta 1.58 / 3.5, global_prob 1.022 / 114; this form (300
// warmup) beta 1.041 / 46, lambda_diag 1.076 / 35, eta 1.068 / 39, global_prob 1.005 / 351,
// step 0.016 (0.013-0.014 before).
//
// Limit: P <= P_MAX = 6 treatment columns (2^6 = 64 inclusion patterns per factor row).
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
}
parameters {
  // theta_ik - theta_i,ref[i]: log-ratios to each sample's reference taxon; the reference cells
  // (i, ref[i]) are unused auxiliaries ~ N(0, 1) (a fixed-shape matrix keeps theta one autodiff node)
  matrix[N, K] theta_free;
  vector[K] mu;  // taxon means
  real<lower=0> sigma2_mu;  // variance of mu
  vector<lower=0>[K] sigma2;  // taxon-specific error variance
  matrix[N, L] F_scaled;  // factor scores times the loading sd: F diag(sd_lambda) (see header)
  matrix[R, L] h_scaled;  // hierarchically centred level means times the loading sd
  vector<lower=0>[Q] sigma2_g;  // variance of the level effects g, per blocking factor
  vector<lower=0>[P] sigma2_b;  // slab variance, per treatment column
  vector<lower=0, upper=1>[P] pi;  // prior inclusion probability, per treatment column
  matrix[L, K] z_Lambda;  // non-centred loadings
  vector<lower=0>[L] sigma2_lambda;  // loading variance, per factor
}
transformed parameters {
  matrix[L, K] Lambda = diag_pre_multiply(sqrt(sigma2_lambda), z_Lambda);  // factor loadings
  matrix[N, L] F = diag_post_multiply(F_scaled, inv_sqrt(sigma2_lambda));  // factor scores f_i (rows)
  matrix[R, L] h = diag_post_multiply(h_scaled, inv_sqrt(sigma2_lambda));  // level means (factor layer)
}
model {
  // theta_i up to its level: 0 at the sample's reference taxon, theta_free elsewhere
  matrix[N, K] theta = theta_free .* not_ref;
  matrix[R, L] g = level_effects(h, rep_row_vector(0, L), parent_of, first_level);  // paper's g'
  vector[R] sd_level = sqrt(sigma2_g[level_factor]);
  matrix[N, L] F_resid = F - Z * g;  // F minus its blocking part

  target += std_normal_lupdf(to_vector(theta_free)[ref_pos]);  // the unused reference cells
  sigma2_mu ~ inv_gamma(1, 1);
  mu ~ normal(0, sqrt(sigma2_mu));
  sigma2 ~ inv_gamma(1, 1);
  sigma2_g ~ inv_gamma(1, 1);
  to_vector(g) ~ normal(0, to_vector(rep_matrix(sd_level, L)));
  sigma2_b ~ inv_gamma(1, 1);
  pi ~ beta(1, L);
  sigma2_lambda ~ inv_gamma(1, 1);
  // log |d(F, h) / d(F_scaled, h_scaled)|: each of the N + R entries of column l is divided by sd_lambda_l
  target += -0.5 * (N + R) * sum(log(sigma2_lambda));
  to_vector(z_Lambda) ~ std_normal();
  // F given everything but b: N(block effects, I), times the pattern mixture of the collapsed
  // spike-and-slab (b_tilde and omega integrated out per factor row)
  to_vector(F_resid) ~ std_normal();
  {
    matrix[S, L] w = pattern_log_weights(XtX, X' * F_resid, rep_vector(1, L), sqrt(sigma2_b), pat,
                                         pat_cols, pat_size, log(pi), log1m(pi));
    for (l in 1:L) {
      target += log_sum_exp(w[:, l]);
    }
  }
  // theta_ik ~ N(mu_k + (Lambda' f_i)_k, sigma2_k), each sample's level integrated out
  target += normal_rows_level_free_lupdf(theta - F_scaled * z_Lambda | mu, sigma2);  // F Lambda = F_scaled z_Lambda
  // Y_i ~ Multinomial(m_i, softmax(theta_i)), all samples in one call
  target += multinomial_logit_rows(theta, y_nz, nz_idx, depth);
}
generated quantities {
  matrix[K, P] beta;  // treatment effects on taxa, Lambda' b
  matrix[L, P] incl_prob;  // P(omega_lj = 1 | F, g, sigma2_b, pi), b_tilde integrated out
  array[L, P] int omega;  // inclusion indicators, drawn from their exact conditional
  vector[P] global_prob;  // P(any factor row includes column j | rest)
  vector[T] term_prob;  // P(any factor row includes any column of term t | rest)
  vector[K] lambda_diag = columns_dot_self(Lambda)';  // diag(Lambda' Lambda)
  vector[K] eta = lambda_diag ./ (lambda_diag + sigma2);  // share of variance through the factors
  {
    matrix[L, P] b = rep_matrix(0, L, P);  // omega .* b_tilde
    matrix[P, L] XtF = X' * (F - Z * level_effects(h, rep_row_vector(0, L), parent_of, first_level));
    matrix[S, L] w = pattern_log_weights(XtX, XtF, rep_vector(1, L), sqrt(sigma2_b), pat,
                                         pat_cols, pat_size, log(pi), log1m(pi));
    vector[P] none_col = rep_vector(1, P);  // prod_l P(omega_lj = 0 | rest)
    vector[T] none_term = rep_vector(1, T);  // prod_l P(omega_lj = 0 for all j in t | rest)
    for (l in 1:L) {
      vector[S] p = softmax(w[:, l]);  // pattern probabilities of factor row l
      int s = categorical_rng(p);
      incl_prob[l] = (pat' * p)';
      none_col .*= pat_off * p;
      none_term .*= term_off * p;
      omega[l] = pat_int[s];
      if (pat_size[s] > 0) {
        array[pat_size[s]] int idx = pat_cols[s, 1:pat_size[s]];
        b[l, idx] = slab_rng(XtX, XtF[:, l], 1, sqrt(sigma2_b), idx)';
      }
    }
    global_prob = 1 - none_col;
    term_prob = 1 - none_term;
    beta = Lambda' * b;
  }
}
