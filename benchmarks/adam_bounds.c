// What bounds the Adam update of the default model (269,834 parameters) on one core: the same
// SIMD8 loop as Optimizer.adam (AVX2, one square root and two divisions per parameter, as
// torch's _single_tensor_adam), against the loop with those three replaced by multiplications
// (the memory traffic alone), each with its four buffers evicted from L2 first (as a step
// leaves them) and hot (16,384 parameters repeated, scaled to the model). Median of 41 trials.
//   gcc -O2 -march=haswell -o /tmp/adam_bounds benchmarks/adam_bounds.c && /tmp/adam_bounds
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <immintrin.h>
#define N 269834  // the default model's parameters
static float *p,*m,*v,*g,*scratch;
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static int cmp(const void*a,const void*b){double x=*(double*)a,y=*(double*)b;return (x>y)-(x<y);}
static void adam(int kind, long n){ __m256 b1=_mm256_set1_ps(0.9f),b2=_mm256_set1_ps(0.999f),o1=_mm256_set1_ps(0.1f),o2=_mm256_set1_ps(0.001f),bc=_mm256_set1_ps(0.3f),ep=_mm256_set1_ps(1e-8f),ss=_mm256_set1_ps(1e-3f);
 for(long i=0;i+8<=n;i+=8){ __m256 gr=_mm256_loadu_ps(g+i),f=_mm256_loadu_ps(m+i),s=_mm256_loadu_ps(v+i),pa=_mm256_loadu_ps(p+i);
  f=_mm256_add_ps(_mm256_mul_ps(b1,f),_mm256_mul_ps(o1,gr)); s=_mm256_add_ps(_mm256_mul_ps(b2,s),_mm256_mul_ps(_mm256_mul_ps(o2,gr),gr));
  if(kind==0) pa=_mm256_sub_ps(pa,_mm256_div_ps(_mm256_mul_ps(ss,f),_mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(s),bc),ep)));
  else pa=_mm256_sub_ps(pa,_mm256_mul_ps(_mm256_mul_ps(ss,f),_mm256_add_ps(_mm256_mul_ps(s,bc),ep)));
  _mm256_storeu_ps(m+i,f);_mm256_storeu_ps(v+i,s);_mm256_storeu_ps(p+i,pa);}}
static void churn(){for(int i=0;i<(1<<20);i++)scratch[i]+=1;}
int main(){float**b[]={&p,&m,&v,&g};for(int k=0;k<4;k++){*b[k]=aligned_alloc(64,N*4+64);for(int i=0;i<N;i++)(*b[k])[i]=0.5f;}scratch=aligned_alloc(64,1<<22);memset(scratch,0,1<<22);
 double t[4][41]; const char*n[]={"adam (2 div + sqrt), cold","no div/sqrt, cold","adam, 16k hot","no div/sqrt, 16k hot"};
 for(int r=0;r<41;r++)for(int k=0;k<4;k++){ if(k<2) churn(); else adam(k-2,16384); double a=now(); if(k<2) adam(k,N); else for(int j=0;j<16;j++) adam(k-2,16384); t[k][r]=(now()-a)*(k<2?1:N/(16.0*16384));}
 for(int k=0;k<4;k++){qsort(t[k],41,sizeof(double),cmp);printf("%-28s %.1f us per 269,834 params\n",n[k],t[k][20]*1e6);}}
