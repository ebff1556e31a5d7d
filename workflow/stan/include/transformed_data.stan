  // Transformed data shared by the three MIMIX programs (included in their `transformed data`).
  int P_MAX = 6;  // 2^P inclusion patterns are enumerated (per factor row, or per taxon)
  if (P > P_MAX) {
    reject("the treatment design has P = ", P, " columns; at most P_MAX = ", P_MAX,
           " are supported (2^P inclusion patterns are enumerated). Drop or merge columns.");
  }
  int S = 1;  // number of inclusion patterns, 2^P
  for (j in 1:P) {
    S *= 2;
  }
  matrix[S, P] pat = inclusion_patterns(P, S);  // pattern s: pat[s, j] = 1 when column j is in
  array[S, P] int pat_int;  // the same as integers, for omega
  array[S, P] int pat_cols = rep_array(0, S, P);  // included columns, left-aligned
  array[S] int pat_size = rep_array(0, S);  // number of included columns
  matrix[T, S] term_off;  // 1 when pattern s includes no column of term t
  for (s in 1:S) {
    for (j in 1:P) {
      pat_int[s, j] = pat[s, j] > 0.5;
      if (pat_int[s, j]) {
        pat_size[s] += 1;
        pat_cols[s, pat_size[s]] = j;
      }
    }
    for (t in 1:T) {
      term_off[t, s] = dot_product(to_vector(term_cols[t]), pat[s]') == 0;
    }
  }
  matrix[P, S] pat_off = (1 - pat)';  // 1 when pattern s excludes column j
  matrix[P, P] XtX = crossprod(X);  // sufficient statistic of the slab regressions
  row_vector[P] Xt1 = rep_row_vector(1, N) * X;  // column sums of X (X' 1, transposed)
  // Sparse form of Y for the likelihood: nonzero counts and their column-major positions in an
  // N x K matrix, and each sample's depth m_i.
  int n_nonzero = 0;
  for (k in 1:K) {
    for (i in 1:N) {
      n_nonzero += Y[i, k] > 0;
    }
  }
  array[n_nonzero] int nz_idx;
  vector[n_nonzero] y_nz;
  vector[N] depth;
  {
    int c = 0;
    for (k in 1:K) {
      for (i in 1:N) {
        if (Y[i, k] > 0) {
          c += 1;
          nz_idx[c] = (k - 1) * N + i;
          y_nz[c] = Y[i, k];
        }
      }
    }
    for (i in 1:N) {
      depth[i] = sum(Y[i]);
    }
  }
  // Blocking design: Z[i, r] = 1 when sample i is in level r; parent_of[r, r'] = 1 when level r'
  // (of the previous factor) contains level r; first_level[r] = 1 for a level of the first factor
  // without a parent (see level_effects).
  matrix[N, R] Z = rep_matrix(0, N, R);
  for (i in 1:N) {
    for (q in 1:Q) {
      Z[i, block[i, q]] = 1;
    }
  }
  matrix[R, R] parent_of = rep_matrix(0, R, R);
  vector[R] first_level = rep_vector(0, R);
  for (r in 1:R) {
    if (level_parent[r] > 0) {
      parent_of[r, level_parent[r]] = 1;
    } else if (level_factor[r] == 1) {
      first_level[r] = 1;
    }
  }
  // Factor models: each sample's reference taxon (its most abundant; the first one on ties) and
  // the mask that sets theta's reference cells to 0 (theta = theta_free .* not_ref).
  array[N] int ref;
  array[N] int ref_pos;  // column-major position of cell (i, ref[i]) in an N x K matrix
  matrix[N, K] not_ref = rep_matrix(1, N, K);
  for (i in 1:N) {
    ref[i] = 1;
    for (k in 2:K) {
      if (Y[i, k] > Y[i, ref[i]]) {
        ref[i] = k;
      }
    }
    ref_pos[i] = (ref[i] - 1) * N + i;
    not_ref[i, ref[i]] = 0;
  }
