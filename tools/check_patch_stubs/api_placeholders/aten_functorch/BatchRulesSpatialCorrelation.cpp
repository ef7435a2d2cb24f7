// PLACEHOLDER (tools/check_patch_stubs/api_placeholders/): stands in for
// aten_functorch/BatchRulesSpatialCorrelation.cpp until that file exists.
#include <ATen/functorch/BatchRulesHelper.h>
