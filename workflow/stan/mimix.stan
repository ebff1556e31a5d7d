// MIMIX (Grantham, Reich, Borer & Gross, arXiv:1703.07747, Sec. 2).
//
// Model (paper's notation; the paper writes sigma2 for variances):
//   Y_i ~ Multinomial(m_i, softmax(theta_i))                             [likelihood]
//   theta_ik ~ N(mu_k + (Lambda' f_i)_k, sigma2_k), sigma2_k ~ InvGamma(1, 1)
//   mu_k ~ N(0, sigma2_mu), sigma2_mu ~ InvGamma(1, 1)
//   f_i ~ N_L(b x_i + sum_q g[., block[i, q]], I)
//   g_(l,r) ~ N(0, sigma2_g[factor of r]), sigma2_g ~ InvGamma(1, 1)
//   b = omega .* b_tilde, b_tilde_lj ~ N(0, sigma2_b[j]), sigma2_b ~ InvGamma(1, 1)
//   omega_lj ~ Bernoulli(pi_j), pi_j ~ Beta(1, L)
//   Lambda_lk ~ N(0, psi_lk xi_lk^2 tau_l^2), psi_lk ~ Exponential(mean 2)     [Dirichlet-Laplace]
//   xi_l ~ Dirichlet(a_l, ..., a_l), tau_l ~ Gamma(K a_l, rate nu), nu ~ Gamma(1, 1)
//   a_l uniform on the grid a_grid (0.01, ..., 0.50)
//   Treatment effect on taxa: beta = Lambda' b (K x P).
//
// Parametrization (why):
// * omega AND b_tilde are integrated out exactly, per factor row l, over the 2^P inclusion
//   patterns s: given s, column l of F - (block effects) is Gaussian with covariance
//   I + X_s diag(sigma2_b[s]) X_s', evaluated with the sufficient statistics X'X and X'(F - G)
//   (one P x P eigendecomposition per pattern, never an N x N matrix). F stays explicit (the exact
//   marginalization needs it) and centred. omega and b are drawn from their exact conditionals in
//   generated quantities, so incl_prob is Rao-Blackwellized over b_tilde as well.
// * Blocking effects in the factor layer are hierarchically centred along nested factors
//   (parameter h[r] = mean of level r, a nested level centred on its parent's mean); gamma = h -
//   (parent mean) is unit-triangular (Jacobian 1), so the prior is stated on g exactly as in the
//   paper. In the no-factor prototype this cut leapfrog steps 511 -> 255.
// * Dirichlet-Laplace scales: xi_l * tau_l = phi_l with phi_lk ~ Gamma(a_l, rate nu) independently
//   (normalized gammas, exact), so no simplex is needed; a_l is summed out over the grid with
//   log_sum_exp (sum_k log Gamma(phi_lk | a, nu) needs only sum_k log phi_lk and sum_k phi_lk).
// * Loadings are adaptively centred: with s = sqrt(psi) phi (the prior sd of Lambda_lk) and
//   c = c_Lambda = 0.25 / sqrt(N), Lambda = z g(s), g(s) = s / sqrt(1 + (s / c)^2), so
//   z ~ N(0, (s / g(s))^2) exactly. A cell the prior shrinks (s << c) is non-centred (z ~ N(0, 1),
//   Lambda = z s); a cell the data resolve (s >> c) is centred (z = Lambda / c). Why: under the DL
//   prior most cells are shrunk far below what the data resolve (non-centring needed), but the few
//   large ones, and the small ones whose scale wanders, are pinned by the data while z = Lambda / s
//   moves with s: a ridge that set the step. A Lanczos look at the metric-scaled Hessian of the
//   non-centred form (NutNet-100) found its four stiffest directions each on one loading cell
//   (eigenvalues 18,000-25,000, leapfrog limit 0.0125). Centring whole taxa instead (the 53 with
//   prevalence >= 0.9) made the step 8 times smaller: which cells are large is a property of the
//   posterior, so the switch must follow s, as g does. c ~ the precision sqrt(sigma2_k / N) with which
//   the data resolve a loading; c = 0.02 (N = 166) was measured, c = sqrt(sigma2_k / N) with the
//   parameter sigma2_k was worse (step 0.010, 511 leapfrog steps). Measured below.
// * theta is sampled as theta_free: each sample's log-ratios to its reference taxon (its most
//   abundant one), with theta_i's level c_i integrated out exactly: the likelihood does not depend
//   on c_i, and integrating N(theta_i + c_i 1 | m_i, diag(sigma2)) over c_i gives a closed form
//   (normal_rows_level_free_lpdf). Same posterior for every other quantity. Why: with theta
//   explicit, beta's common level per treatment (a constant added to every taxon's effect) is
//   set only by the priors and moving it meant moving every theta cell of the treated samples
//   together; on NutNet-100 (Gaussian loadings, L = 10, 2 chains x 500 draws) the nutrient
//   column of beta averaged over taxa sat at -0.012 in one chain and +0.052 in the other.
// * Not adopted here (adopted in mimix_gaussian.stan): F and h scaled by the loading row scale
//   tau_l = sum_k phi_lk. With it (and theta_free) on NutNet-100, L = 10, 2 chains x (300 + 500),
//   max depth 10: step 0.0035-0.0045, 930-980 leapfrog steps, 48 and 90 divergences, max R-hat
//   1.65 (beta), 1.33 (global_prob): worse than without (bench/geometry-log.md, session 5).
// * The theta prior and the likelihood are each one whole-matrix expression (include/functions.stan)
//   instead of K normal and N multinomial_logit statements (session 5: NutNet-408 14.1 -> 10.6 ms
//   per gradient), and every N x K matrix is one autodiff node under stanc --O1 ("struct of
//   arrays"): theta_free is N x K, its reference cells unused N(0, 1) auxiliaries, so theta =
//   theta_free .* not_ref needs no cell-wise assignment; mu is taken out of the squares
//   analytically. bench/gradient.py, NutNet-408, fastest of 25 blocks (session 8): mimix_gaussian
//   5.09 -> 4.44 ms per gradient, mimix 5.47 -> 4.97 ms (previous program without --O1, as PyStan
//   built it -> this one with --O1); the previous program under --O1 (as cmdstanpy built it) took
//   9.65 and 10.81 ms.
// Measured on NutNet-100 (N = 166, K = 101, P = 3, site + block nested; L = 10; PyStan 3.10; adapt_delta
// 0.9, max tree depth 10; SVD inits; bench/geometry-log.md, sessions 5-6):
//   non-centred loadings, 2 chains x (200 + 300): step 0.0039-0.0046, 964-981 leapfrog steps (depth 10
//     on 261-275 of 300 draws), 25-39 divergences, 714-719 s per chain; max R-hat beta 1.56
//   this file (adaptive centring), 2 chains x (500 + 1000): step 0.0123-0.0129, 255 leapfrog steps in
//     chain 1 (3 divergences), 255-1,023 (mean 502, 30 divergences) in chain 2, 2.2-3.3 ms per gradient;
//     max R-hat / min bulk ESS: beta 1.56 / 3.5, lambda_diag 1.69 / 3.2, global_prob 1.09 / 16.
//   Gaussian loadings (mimix_gaussian): step 0.010-0.016, 255-511 leapfrog steps, 0 divergences.
// Adaptive centring removed the stiffness (a 2-4x larger step, 2-4x shorter trajectories) but not
// the slow collective modes: lambda_diag, eta and beta still drift over 1,000 draws (for one taxon
// lambda_diag went from 1.03 to 1.73 within a chain). The Dirichlet-Laplace model does not converge on
// NutNet in hours yet; mimix_gaussian (whose row scale is one coordinate, F scaled by it) does nearly.
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
  // Scale c of the loadings' adaptive centring (see header): about the precision with which the data
  // resolve a loading, sqrt(sigma2_k / sum_i f_il^2) ~ sqrt(sigma2_k / N), for sigma2_k ~ 1/16.
  real c_Lambda = 0.25 / sqrt(N);
}
parameters {
  // theta_ik - theta_i,ref[i]: log-ratios to each sample's reference taxon; the reference cells
  // (i, ref[i]) are unused auxiliaries ~ N(0, 1) (a fixed-shape matrix keeps theta one autodiff node)
  matrix[N, K] theta_free;
  vector[K] mu;  // taxon means
  real<lower=0> sigma2_mu;  // variance of mu
  vector<lower=0>[K] sigma2;  // taxon-specific error variance
  matrix[N, L] F;  // factor scores f_i (rows), centred
  matrix[R, L] h;  // hierarchically centred level means in the factor layer (see header)
  vector<lower=0>[Q] sigma2_g;  // variance of the level effects g, per blocking factor
  vector<lower=0>[P] sigma2_b;  // slab variance, per treatment column
  vector<lower=0, upper=1>[P] pi;  // prior inclusion probability, per treatment column
  matrix[L, K] z_Lambda;  // adaptively centred loadings: Lambda = z_Lambda .* g(sd_Lambda) (see header)
  matrix<lower=0>[L, K] psi;  // local Laplace mixing variances
  matrix<lower=0>[L, K] phi;  // xi_lk * tau_l
  real<lower=0> nu;  // rate of the Dirichlet-Laplace scales
}
transformed parameters {
  matrix[L, K] Lambda;  // factor loadings (L x K)
  {
    matrix[L, K] sd_Lambda = sqrt(psi) .* phi;  // prior sd of each loading, s = sqrt(psi) xi tau
    Lambda = z_Lambda .* sd_Lambda ./ sqrt(1 + square(sd_Lambda / c_Lambda));  // z g(s)
  }
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
  nu ~ gamma(1, 1);
  {
    // phi_lk ~ Gamma(a_l, nu) with a_l summed over the grid
    vector[L] sum_log_phi = log(phi) * rep_vector(1, K);
    vector[L] sum_phi = phi * rep_vector(1, K);
    vector[A] lp_a0 = K * (a_grid * log(nu) - lgamma(a_grid)) - log(A);
    for (l in 1:L) {
      target += log_sum_exp(lp_a0 + (a_grid - 1) * sum_log_phi[l] - nu * sum_phi[l]);
    }
  }
  to_vector(psi) ~ exponential(0.5);
  // Lambda_lk ~ N(0, s_lk^2) with Lambda = z g(s): z ~ N(0, (s / g(s))^2) (the Jacobian g(s) included)
  to_vector(z_Lambda) ~ normal(0, to_vector(sqrt(1 + square(sqrt(psi) .* phi / c_Lambda))));
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
  target += normal_rows_level_free_lupdf(theta - F * Lambda | mu, sigma2);
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
