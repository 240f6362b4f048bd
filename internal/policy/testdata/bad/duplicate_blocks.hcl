# want: 5:1 Duplicate engine block | duplicate_blocks.hcl:3,1
# want: 7:1 Duplicate settings block | duplicate_blocks.hcl:4,1
engine "builtin" {}
settings {}
engine "builtin" {}
watch "/srv" {}
settings {}
