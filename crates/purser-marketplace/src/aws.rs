pub struct AwsClient;
pub struct AwsConfig;
