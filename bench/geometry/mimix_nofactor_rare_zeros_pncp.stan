// EXPERIMENT (bench/geometry-log.md, session 10): mimix_nofactor with the zero-count cells of rare
// taxa (prevalence < nc_prevalence, data) partially non-centred (Papaspiliopoulos, Roberts & Skold
// 2007): theta_ik = M_ik + sigma_k^a v_ik there, M = mu + block effects, a = nc_power (data; a = 1 is the
// full non-centring of sessions 8-9, a = 0.5 the repository's form, a = 0 moves only the location). Affine given the other
// parameters: log Jacobian sum over those cells of a log sigma_k. Every other cell centred.
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
  real<lower=0, upper=1> nc_prevalence;   // EXPERIMENT: zero cells of taxa below this prevalence are non-centred
  real<lower=0, upper=1> nc_power;        // EXPERIMENT: power a of sigma_k in the non-centred map
}
transformed data {
#include transformed_data.stan
  matrix[N, K] nc = rare_zero_cells(Y, nc_prevalence);  // 1 for a non-centred cell
  vector[K] n_nc = (rep_row_vector(1, N) * nc)';
  print("non-centred cells: ", sum(n_nc));
}
parameters {
  matrix[N, K] theta_raw;  // theta where centred, (theta - M) / sigma^a where non-centred
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
  matrix[N, K] theta = theta_from_raw(theta_raw, nc, Z * gamma + rep_vector(1, N) * mu', pow(sigma2, 0.5 * nc_power));
  target += 0.5 * nc_power * dot_product(n_nc, log(sigma2));  // log Jacobian of the non-centred cells
  vector[R] sd_level = sqrt(sigma2_g[level_factor]);
  // theta minus its block effects; theta minus all but beta is e - 1 mu', which is never formed
  // (normal_columns_lpdf takes mu out of the squares, X'(e - 1 mu') = X'e - (X'1) mu')
  matrix[N, K] e = theta - Z * gamma;

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
    matrix[N, K] resid = theta_from_raw(theta_raw, nc, prior_mean, pow(sigma2, 0.5 * nc_power)) - prior_mean;
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
